"""What every ``pinsdk`` subcommand module shares: the usage error, reading an input
file, and ``HOST[:PORT]``."""

from __future__ import annotations

__all__ = ["CliError", "parse_target", "read_file"]


class CliError(Exception):
    """A usage or input problem: printed, exit status 2."""

    status = 2


def read_file(path: str, what: str) -> bytes:
    """The bytes of ``path``, or a :class:`CliError` naming ``what`` could not be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def parse_target(target: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port); 443 by default."""
    host, port = target, "443"
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "443"
    elif target.count(":") == 1:
        host, port = target.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{target!r} is not HOST[:PORT]")
    return host, int(port)
