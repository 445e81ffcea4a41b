"""Host name normalisation and pin host patterns (pure code).

Patterns follow OkHttp's ``CertificatePinner``: an exact name, ``*.example.com``
(exactly one more label) or ``**.example.com`` (zero or more labels). Names are
compared in their lower-case IDNA A-label form without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum

import attrs
import idna

from .errors import PinConfigError

__all__ = ["HostPattern", "PatternKind", "is_ip_literal", "normalize_host"]

_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_MAYBE_IP = re.compile(r"^[0-9.]+$|:")  # only these can parse as an address: skip the rest


# The shape of nearly every pattern in a large document: an optional "*." or "**.",
# then a lower-case ASCII name whose last label ends in a letter (so it is no address).
_COMMON = rf"(?:\*\*?\.)?{_LABEL}(?:\.{_LABEL})*(?<=[a-z])"
_COMMON_LINES = re.compile(rf"(?:{_COMMON}\n)*{_COMMON}")


def all_common_patterns(patterns: list[str]) -> bool:
    """Whether every pattern is already canonical and of the common shape (one regular
    expression over the whole list; the caller also bounds their length). Such a pattern
    parses to itself, with no normalising."""
    joined = "\n".join(patterns)
    # A pattern holding a line break would pass as two lines: count them too.
    return joined.count("\n") == len(patterns) - 1 and bool(_COMMON_LINES.fullmatch(joined))


def _ip_literal(host: str) -> str | None:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not _MAYBE_IP.search(candidate):
        return None
    try:
        return ipaddress.ip_address(candidate).compressed
    except ValueError:
        return None


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (brackets allowed)."""
    return _ip_literal(host) is not None


def normalize_host(host: str) -> str:
    """Return the canonical form of a host name used for matching.

    Lower case, no trailing dot, IDNA A-labels (``σkhttp.com`` becomes
    ``xn--khttp-fde.com``); IP literals in their compressed form without brackets.
    Raises :class:`PinConfigError` naming the host if it is not a valid name.
    """
    if not isinstance(host, str) or not host:
        raise PinConfigError(f"host must be a non-empty string, not {host!r}")
    if host.isascii():
        name = host.lower()
    else:
        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise PinConfigError(f"host {host!r} is not a valid IDNA name: {exc}") from None
    if name.endswith("."):
        name = name[:-1]
    if name[-1:].isalpha() and len(name) <= 253 and _NAME.match(name):
        return name  # the common case: a name whose last label is alphabetic is no address
    ip = _ip_literal(name)
    if ip is not None:
        return ip
    if len(name) > 253 or not _NAME.match(name):
        raise PinConfigError(f"host {host!r} is not a valid host name")
    return name


def fast_normalize(host: str) -> str:
    """The hot-path form of :func:`normalize_host` for names the TLS layer already checked."""
    if host.isascii():
        host = host.lower()
        return host[:-1] if host.endswith(".") else host
    return normalize_host(host)


class PatternKind(Enum):
    """How a pattern's base name relates to the host names it matches."""

    EXACT = "exact"  # the base name itself
    ONE_LABEL = "*"  # exactly one label below the base
    ANY_LABELS = "**"  # the base and any number of labels below it


@attrs.frozen(repr=False)
class HostPattern:
    """A parsed host pattern: its kind and its normalised base name."""

    kind: PatternKind
    base: str
    text: str

    def __repr__(self) -> str:
        return f"HostPattern({self.text!r})"

    @classmethod
    def parse(cls, pattern: str) -> HostPattern:
        """Parse ``example.com``, ``*.example.com`` or ``**.example.com``."""
        if not isinstance(pattern, str) or not pattern:
            raise PinConfigError(f"host pattern must be a non-empty string, not {pattern!r}")
        if pattern.startswith("**."):
            kind, rest = PatternKind.ANY_LABELS, pattern[3:]
        elif pattern.startswith("*."):
            kind, rest = PatternKind.ONE_LABEL, pattern[2:]
        else:
            kind, rest = PatternKind.EXACT, pattern
        if "*" in rest:
            raise PinConfigError(
                f"host pattern {pattern!r} is invalid: a wildcard is only allowed as a "
                "leading '*.' or '**.' label"
            )
        try:
            base = normalize_host(rest)
        except PinConfigError as exc:
            raise PinConfigError(f"host pattern {pattern!r} is invalid: {exc}") from None
        if kind is PatternKind.EXACT:
            return cls(kind, base, base)
        if _ip_literal(base) is not None:
            raise PinConfigError(f"host pattern {pattern!r} puts a wildcard on an IP address")
        return cls(kind, base, ("**." if kind is PatternKind.ANY_LABELS else "*.") + base)

    def matches(self, host: str, *, include_subdomains: bool = False) -> bool:
        """Whether a normalised host name matches (the readable reference implementation)."""
        if self.kind is PatternKind.EXACT:
            return host == self.base or (include_subdomains and host.endswith("." + self.base))
        if self.kind is PatternKind.ANY_LABELS:
            return host == self.base or host.endswith("." + self.base)
        if not host.endswith("." + self.base):
            return False
        extra = host[: -len(self.base) - 1]
        return include_subdomains or "." not in extra
