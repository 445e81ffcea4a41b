"""``pinsdk check``: would clients accept the servers of a policy? A TLS handshake per
server (never an HTTP request); the judging is :mod:`pinsdk._core.preflight`'s."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Sequence

from ._cli_inputs import CliError, distinct_keys, load_public_key_pem, parse_target
from ._cli_inputs import read_input as _read
from ._core.cosign import signer_summary
from ._core.envelope import PAYLOAD_TYPE, VerifiedPayload, verify_envelope
from ._core.errors import PinConfigError, UpdateRejectedError
from ._core.keys import KeySet
from ._core.policy import EXPIRED_ENTRY_FLAG, PinPolicy
from ._core.preflight import (
    TargetReport,
    default_hosts,
    judge_chain,
    mark_backup_only,
    policy_findings,
    unreachable,
)
from ._core.schema import ENVELOPE
from ._core.timeutil import format_datetime
from ._tls import trust_context, verified_chain

__all__ = ["add_parser"]


def _load(args: argparse.Namespace) -> tuple[PinPolicy, VerifiedPayload | None, KeySet | None]:
    data = _read(args.file, "policy or document")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{args.file!r} is not valid JSON: {exc}") from None
    is_document = isinstance(raw, dict) and bool(ENVELOPE.keys & raw.keys())
    if not is_document:
        if args.trusted_key or args.threshold != 1:
            raise CliError(
                f"{args.file!r} is a policy, not a signed document: --trusted-key and "
                "--threshold have nothing to verify"
            )
        try:
            return PinPolicy.from_dict(raw), None, None
        except PinConfigError as exc:
            raise CliError(f"policy {args.file!r}: {exc}") from None
    if not args.trusted_key:
        raise CliError(
            f"{args.file!r} is a signed document ({PAYLOAD_TYPE}): give --trusted-key PUB "
            "(repeat, with --threshold K) so it is verified as clients verify it"
        )
    try:
        pems = [load_public_key_pem(p, "--trusted-key") for p in args.trusted_key]
        keys = KeySet.build(distinct_keys(args.trusted_key, pems, "--trusted-key"), args.threshold)
    except PinConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        verified = verify_envelope(data, keys)
    except UpdateRejectedError as exc:
        raise _Refused(
            f"REJECTED: the document would be refused by clients: {exc.reason}"
        ) from None
    return verified.policy, verified, keys


class _Refused(Exception):
    """The document itself would be refused: exit status 1."""


def _addresses(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _handshake(
    context: ssl.SSLContext, host: str, address: str, port: int, timeout: float
) -> list[bytes]:
    """Connect, complete the TLS handshake, return the verified chain, close. Not one
    byte of HTTP is written."""
    with (
        socket.create_connection((address, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return verified_chain(tls)


def _check_target(
    args: argparse.Namespace,
    context: ssl.SSLContext,
    policy: PinPolicy,
    host: str,
    port: int,
    now: float,
) -> list[TargetReport]:
    try:
        addresses = _addresses(host, port)
    except OSError as exc:
        return [unreachable(host, port, None, f"cannot resolve {host}: {exc.strerror or exc}")]
    out = []
    for address in addresses:
        try:
            chain = _handshake(context, host, address, port, args.timeout)
        except ssl.SSLCertVerificationError as exc:
            reason = f"certificate verification failed: {exc.verify_message}"
            out.append(unreachable(host, port, address, reason))
            continue
        except ssl.SSLError as exc:
            out.append(unreachable(host, port, address, f"TLS failure: {exc.reason or exc}"))
            continue
        except OSError as exc:
            reason = f"cannot connect: {exc.strerror or exc}"
            out.append(unreachable(host, port, address, reason))
            continue
        out.append(
            judge_chain(policy, host, port, address, chain, now=now, warn_days=args.warn_days)
        )
    return out


def _document_lines(verified: VerifiedPayload, keys: KeySet, now: float, warn: float) -> list[str]:
    days = (verified.expires.timestamp() - now) / 86400
    lines = [
        f"document: version {verified.version}, issued {format_datetime(verified.issued_at)}, "
        f"expires {format_datetime(verified.expires)} (in {days:.1f} days)",
        *signer_summary(keys, verified.signed_by),
    ]
    if days < warn:
        lines.append(f"warning: the document expires within {warn:g} days: re-sign it")
    return lines


def _table(reports: Sequence[TargetReport]) -> str:
    header = ("target", "address", "result", "days", "matched")
    rows = [header]
    for r in reports:
        result = "accepted" if r.ok else "REFUSED"
        if r.ok and r.backup_only:
            result = "accepted (backup)"
        rows.append(
            (
                f"{r.host}:{r.port}",
                r.address or "-",
                result,
                "-" if r.days_left is None else str(r.days_left),
                ", ".join(r.matched) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i:
            r = reports[i - 1]
            if r.reason:
                out.append(f"    refused: {r.reason}")
            out.extend(f"    warning: {w}" for w in r.warnings)
    return "\n".join(out) + "\n"


class _SaidInTheReport(logging.Filter):
    """The report lists single-pin and expired entries itself: the library's log lines
    would say it twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, EXPIRED_ENTRY_FLAG, False):
            return False
        return "single pin and no backup" not in record.getMessage()


def _trust(ca_file: str | None) -> ssl.SSLContext:
    """What clients trust: httpx's default store, or only the anchors of ``ca_file``."""
    if ca_file is None:
        return trust_context(True)
    if not os.path.isfile(ca_file):
        raise CliError(f"--ca-file {ca_file!r}: no such file")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--ca-file {ca_file!r} is not a usable CA bundle: {exc}") from None


def cmd_check(args: argparse.Namespace) -> int:
    quiet = _SaidInTheReport()
    logger = logging.getLogger("pinsdk")
    logger.addFilter(quiet)
    try:
        return _check(args)
    finally:
        logger.removeFilter(quiet)


def _check(args: argparse.Namespace) -> int:
    if args.warn_days < 0:
        raise CliError("--warn-days must not be negative")
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    context = _trust(args.ca_file)
    now = time.time()
    try:
        policy, verified, keys = _load(args)
    except _Refused as exc:
        if args.json:
            print("[]")
        print(str(exc), file=sys.stderr if args.json else sys.stdout)
        return 1
    targets = [parse_target(t) for t in args.target or []]
    if not targets:
        targets = [(host, 443) for host in default_hosts(policy, now)]
    if not targets:
        raise CliError(
            f"{args.file!r} has no exact host to connect to (only patterns): give --target"
        )
    reports: list[TargetReport] = []
    for host, port in targets:
        reports += _check_target(args, context, policy, host, port, now)
    reports = mark_backup_only(reports)
    notes = policy_findings(policy, now)
    head = (
        []
        if verified is None or keys is None
        else _document_lines(verified, keys, now, args.warn_days)
    )
    if args.json:
        json.dump([r.to_dict() for r in reports], sys.stdout, indent=2)
        sys.stdout.write("\n")
        for line in [*head, *(f"warning: {n}" for n in notes)]:
            print(line, file=sys.stderr)
    else:
        for line in head:
            print(line)
        sys.stdout.write(_table(reports))
        for note in notes:
            print(f"warning: {note}")
        accepted = sum(r.ok for r in reports)
        print(f"{accepted} of {len(reports)} servers would be accepted")
    return 0 if all(r.ok for r in reports) else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pinsdk check``."""
    check = sub.add_parser(
        "check",
        help="check that servers would be accepted by a policy or signed document",
        description="For each server (default: every exact host of the policy on port 443, "
        "at every address it resolves to) do a TLS handshake only, verify the chain as a "
        "client would, and report whether a client with these pins would accept it. "
        "Exit 0 when every server would be accepted, 1 when any would be refused.",
    )
    check.add_argument(
        "file",
        metavar="POLICY_OR_DOCUMENT",
        help="a pin policy (JSON) or a signed pin document to check against the servers",
    )
    check.add_argument(
        "--target",
        action="append",
        metavar="HOST[:PORT]",
        help="server to check instead of the policy's hosts (repeat; port 443 by default)",
    )
    check.add_argument(
        "--ca-file", metavar="FILE", help="trust only these CA certificates (PEM bundle)"
    )
    check.add_argument(
        "--trusted-key",
        action="append",
        metavar="PUB",
        help="public key to verify a signed document with (repeat)",
    )
    check.add_argument(
        "--threshold",
        type=int,
        default=1,
        metavar="K",
        help="signatures of distinct --trusted-key keys a signed document needs (default 1)",
    )
    check.add_argument(
        "--warn-days",
        type=float,
        default=30.0,
        metavar="N",
        help="warn about certificates and a document expiring within N days (default 30)",
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="connect and handshake timeout per server (default 10)",
    )
    check.add_argument("--json", action="store_true", help="print a JSON list, one per server")
    check.set_defaults(func=cmd_check)
