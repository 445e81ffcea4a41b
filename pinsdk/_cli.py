"""The ``pinsdk`` command: pins of a server, keys, signed pin documents, and the demo.

Exit status: 0 success; 1 a document did not verify (``verify``), a server would be refused
(``check``) or the demo misbehaved;
2 bad usage or unreadable input; 3 the host could not be reached or TLS failed (``pins``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ._cli_check import add_parser as add_check_parser
from ._cli_inputs import (
    CliError,
    NetworkError,
    describe_file,
    distinct_keys,
    load_certificates,
    load_public_key_pem,
    order_chain,
    parse_target,
    read_input,
)
from ._cli_sign import add_parser as add_cosign_parser
from ._cli_sign import load_signers
from ._configgen import (
    FORMATS,
    CertRow,
    backup_row,
    describe_chain,
    host_entries,
    render,
    select,
)
from ._core.cosign import signer_summary
from ._core.envelope import (
    DEFAULT_CLOCK_LEEWAY,
    parse_envelope,
    sign_envelope,
    signed_by,
    verify_envelope,
)
from ._core.errors import PinConfigError, SignatureError, UpdateRejectedError
from ._core.keys import KeySet, TrustedKey
from ._core.limits import DEFAULT_LIMITS, UpdateLimits
from ._core.pins import pin_of_der
from ._core.policy import EXPIRED_ENTRY_FLAG, DomainPins, PinPolicy
from ._core.timeutil import format_datetime, parse_datetime
from ._refresher import MAX_SUGGESTED_INTERVAL, MIN_SUGGESTED_INTERVAL
from ._tls import served_chain, verified_chain
from ._version import __version__

__all__ = ["main"]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` from now, or an RFC 3339 date-time."""
    match = _DURATION.match(text.strip())
    if match:
        return now + timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        return parse_datetime(text, what="--expires")
    except PinConfigError:
        raise CliError(
            f"--expires {text!r} is neither a duration like 30d, 12h, 90m nor an RFC 3339 time"
        ) from None


def _read(path: str, what: str) -> bytes:
    return read_input(path, what)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cmd_keygen(args: argparse.Namespace) -> int:
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if args.alg == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = TrustedKey.load(key.public_key())
    pub_path = args.out + ".pub"
    for path in (args.out, pub_path):
        if os.path.exists(path):
            raise CliError(f"{path!r} exists; refusing to overwrite a key")
    try:
        _write_private(args.out, private_pem)
        with open(pub_path, "w", encoding="ascii") as f:
            f.write(public.pem)
    except OSError as exc:
        raise CliError(f"cannot write key: {exc}") from None
    print(public.pem, end="")
    print(f"keyid: {public.keyid}")
    print(f"private key: {args.out} (mode 0600)  public key: {pub_path}")
    return 0


_ENVELOPE_KEYS = frozenset({"payloadType", "payload", "signatures"})


class _NotExpiredEntries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, EXPIRED_ENTRY_FLAG, False)


@contextlib.contextmanager
def _expired_entries_said_here() -> Iterator[None]:
    """The command lists expired entries itself: the library's log lines would repeat them
    (once per parse)."""
    quiet = _NotExpiredEntries()
    logger = logging.getLogger("pinsdk")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _expiry_of(entry: DomainPins) -> str:
    return "?" if entry.expires is None else format_datetime(entry.expires)


def _count(entries: Sequence[DomainPins]) -> str:
    return "1 entry has" if len(entries) == 1 else f"{len(entries)} entries have"


def _named(entries: Sequence[DomainPins]) -> str:
    return ", ".join(f"{d.host!r} (expires {_expiry_of(d)})" for d in entries)


def _load_policy_to_sign(path: str, allow_empty: bool) -> PinPolicy:
    try:
        raw = json.loads(_read(path, "policy").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"policy {path!r} is not valid JSON: {exc}") from None
    if isinstance(raw, dict) and _ENVELOPE_KEYS & raw.keys():
        # Signing an envelope would read no policy keys from it: a document pinning nothing.
        raise CliError(
            f"{path!r} is a signed envelope, not a policy; sign the policy JSON it was made "
            "from (pinsdk verify reads envelopes)"
        )
    try:
        policy = PinPolicy.from_dict(raw)
    except PinConfigError as exc:
        raise CliError(f"policy {path!r}: {exc}") from None
    if not policy.domains and not allow_empty:
        raise CliError(
            f"policy {path!r} has an empty 'domains' list: the document would unpin every "
            "host for every client that installs it. Pass --allow-empty if that is the intent."
        )
    return policy


def cmd_sign(args: argparse.Namespace) -> int:
    with _expired_entries_said_here():
        return _sign(args)


def _sign(args: argparse.Namespace) -> int:
    policy = _load_policy_to_sign(args.policy, args.allow_empty)
    if args.version < 1:
        raise CliError("--version must be at least 1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    expires = parse_expiry(args.expires, now)
    if expires <= now:
        raise CliError(f"--expires {args.expires!r} is not in the future")
    expired = policy.expired_entries(now)
    if expired and not args.allow_expired_entries:
        raise CliError(
            f"policy {args.policy!r}: {_count(expired)} already expired and would "
            f"pin nothing, leaving their hosts unpinned: {_named(expired)}. Renew or remove "
            "them, or pass --allow-expired-entries to sign anyway."
        )
    if expired:
        print(
            f"warning: signing entries that have expired already: {_named(expired)}",
            file=sys.stderr,
        )
    lapsing = [d for d in policy.expired_entries(expires) if d not in expired]
    if lapsing:
        print(
            f"warning: these entries expire before the document does ({format_datetime(expires)})"
            f" and leave their hosts unpinned from then: {_named(lapsing)}",
            file=sys.stderr,
        )
    shape = policy.to_dict(host_groups=args.host_groups)
    payload: dict[str, Any] = {
        "spec_version": 1,
        "version": args.version,
        "issued_at": format_datetime(now),
        "expires": format_datetime(expires),
        "domains": shape["domains"],
        "deny": shape["deny"],
    }
    # Every policy key but the version (replaced by --version) goes into the document.
    for key in ("require_backup", "report_uri", "host_groups"):
        if key in shape:
            payload[key] = shape[key]
    if args.refresh_interval is not None:
        interval = args.refresh_interval
        if not MIN_SUGGESTED_INTERVAL <= interval <= MAX_SUGGESTED_INTERVAL:
            clamped = min(max(interval, MIN_SUGGESTED_INTERVAL), MAX_SUGGESTED_INTERVAL)
            print(
                f"warning: --refresh-interval {interval:g} is outside what clients honour "
                f"({MIN_SUGGESTED_INTERVAL:g} s to {MAX_SUGGESTED_INTERVAL:g} s); they will "
                f"poll every {clamped:g} s",
                file=sys.stderr,
            )
        payload["refresh_interval"] = interval
    signers = load_signers(args.key, args.public_key)
    try:
        if args.new_key:
            new_pems = [load_public_key_pem(p, "--new-key") for p in args.new_key]
            new_keys = KeySet.build(
                distinct_keys(args.new_key, new_pems, "--new-key"), args.new_threshold
            )
            payload["keys"] = new_keys.to_dict()
        limits = _limits(args)
        envelope = sign_envelope(payload, signers, limits=limits)
        # Check the result with the signers' own public keys before handing it out.
        verify_envelope(envelope, KeySet.build([s.public.key for s in signers], 1), limits=limits)
    except (PinConfigError, UpdateRejectedError) as exc:
        raise CliError(str(exc)) from None
    if args.out:
        try:
            with open(args.out, "wb") as f:
                f.write(envelope)
        except OSError as exc:
            raise CliError(f"cannot write {args.out!r}: {exc}") from None
        print(
            f"signed version {args.version} ({len(policy.domains)} domains, expires "
            f"{payload['expires']}) with {len(signers)} key(s) -> {args.out}",
            file=sys.stderr,
        )
    else:
        sys.stdout.buffer.write(envelope)
    return 0


def _limits(args: argparse.Namespace) -> UpdateLimits:
    """The document limits of --max-domains and --max-size (the clients' defaults)."""
    try:
        return UpdateLimits(max_domains=args.max_domains, max_size=args.max_size)
    except PinConfigError as exc:
        raise CliError(str(exc).replace("max_", "--max-", 1).replace("_", "-")) from None


def _add_limit_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--max-domains",
        type=int,
        default=DEFAULT_LIMITS.max_domains,
        metavar="N",
        help=f"{what} at most N domains (default {DEFAULT_LIMITS.max_domains}, as clients "
        "accept unless their UpdateLimits raise it)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_LIMITS.max_size,
        metavar="BYTES",
        help=f"{what} a signed file of at most BYTES (default {DEFAULT_LIMITS.max_size}, the "
        "clients' default max_size)",
    )


def cmd_verify(args: argparse.Namespace) -> int:
    with _expired_entries_said_here():
        return _verify(args)


def _verify(args: argparse.Namespace) -> int:
    if args.warn_days < 0:
        raise CliError("--warn-days must not be negative")
    pems = [load_public_key_pem(p, "--trusted-key") for p in args.trusted_key]
    data = _read(args.file, "document")
    what = describe_file(data)
    if not what.startswith(("a signed pin document", "JSON", "text starting like JSON")):
        hint = (
            "; sign it first: pinsdk sign POLICY.json --key KEY --version N --expires 30d"
            if what.startswith("an unsigned pin policy")
            else ""
        )
        raise CliError(f"{args.file!r} is {what}, not a signed pin document{hint}")
    try:
        keys = KeySet.build(distinct_keys(args.trusted_key, pems, "--trusted-key"), args.threshold)
    except PinConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        verified = verify_envelope(
            data, keys, check_expiry=not args.allow_expired, limits=_limits(args)
        )
    except UpdateRejectedError as exc:
        print(f"REJECTED: {exc.reason}")
        if isinstance(exc, SignatureError):
            _print_signers(data, keys)
        return 1
    policy = verified.policy
    now = datetime.now(timezone.utc)
    expired = policy.expired_entries(now)
    soon = [
        d for d in policy.expired_entries(now + timedelta(days=args.warn_days)) if d not in expired
    ]
    dead = f" ({len(expired)} expired)" if expired else ""
    print(
        f"OK: version {verified.version}, {len(policy.domains)} domains{dead}, "
        f"{len(policy.deny)} denied pins"
    )
    print(
        f"issued {format_datetime(verified.issued_at)}, expires {format_datetime(verified.expires)}"
    )
    late = now.timestamp() - verified.expires.timestamp()
    if 0 <= late < DEFAULT_CLOCK_LEEWAY:
        print(
            f"EXPIRED WITHIN LEEWAY: the document expired {late:.0f} s ago; clients still "
            f"accept it for {DEFAULT_CLOCK_LEEWAY:g} s after its expiry (clock skew), then "
            "refuse it: sign a new version"
        )
    elif late >= DEFAULT_CLOCK_LEEWAY:  # only with --allow-expired
        print(
            f"EXPIRED: the document expired {late / 86400:.1f} days ago; clients refuse it "
            "(checked anyway because of --allow-expired)"
        )
    early = verified.issued_at.timestamp() - now.timestamp()
    if early > 0:
        print(
            f"ISSUED IN THE FUTURE: issued_at is {early:.0f} s ahead of this clock (accepted "
            f"within {DEFAULT_CLOCK_LEEWAY:g} s of skew)"
        )
    # A rotation document is also signed by the new keys: they are not trusted yet.
    trusted_ids = {k.keyid for k in keys.keys}
    print("\n".join(signer_summary(keys, verified.signed_by)))
    if verified.rotated_keys is not None:
        rotated = verified.rotated_keys
        print(f"rotates keys to {len(rotated.keys)} key(s), threshold {rotated.threshold}")
        by_new = sorted(verified.signed_by - trusted_ids)
        if by_new:
            print(f"also signed by {len(by_new)} new key(s): {', '.join(by_new)}")
    for entry in expired:
        print(f"EXPIRED: {entry.host!r} expired at {_expiry_of(entry)}: it pins nothing")
    for entry in soon:
        assert entry.expires is not None
        days = (entry.expires - now).total_seconds() / 86400
        print(f"EXPIRES SOON: {entry.host!r} expires at {_expiry_of(entry)} (in {days:.1f} days)")
    return 0


def _print_signers(data: bytes, keys: KeySet) -> None:
    """Which trusted keys signed a document short of its threshold, which are missing."""
    with contextlib.suppress(UpdateRejectedError):
        print("\n".join(signer_summary(keys, signed_by(parse_envelope(data), keys))))


def fetch_chain(args: argparse.Namespace, host: str, port: int) -> list[CertRow]:
    """Connect with TLS and describe the chain (verified, unless --insecure)."""
    if args.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif args.cafile:
        try:
            ctx = ssl.create_default_context(cafile=args.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"--cafile {args.cafile!r} is not a usable CA bundle: {exc}") from None
    else:
        ctx = httpx.create_ssl_context()
    name = args.servername or host
    try:
        with (
            socket.create_connection((host, port), timeout=args.timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            served = served_chain(tls)
            verified = [] if args.insecure else verified_chain(tls)
    except ssl.SSLCertVerificationError as exc:
        raise NetworkError(
            f"TLS failure with {host}:{port}: certificate verification failed: "
            f"{exc.verify_message} (use --cafile for a private CA, or --insecure to inspect)"
        ) from None
    except ssl.SSLError as exc:
        raise NetworkError(f"TLS failure with {host}:{port}: {exc.reason or exc}") from None
    except OSError as exc:
        raise NetworkError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        if args.insecure:
            certs = [x509.load_der_x509_certificate(d) for d in served]
            return describe_chain(certs, sources=["server"] * len(certs), verified=None)
        sent = set(served)
        certs = [x509.load_der_x509_certificate(d) for d in verified]
        sources = ["server" if d in sent else "store" for d in verified]
        return describe_chain(certs, sources=sources, verified=True)
    except ValueError as exc:  # OpenSSL accepts BER that strict DER parsers refuse
        raise NetworkError(
            f"{host}:{port} sent a certificate that is not strict DER, so it has no pin "
            f"(a pinned client refuses this server): {exc}"
        ) from None


def load_cert_files(paths: Sequence[str]) -> list[CertRow]:
    """Certificates from PEM (bundles allowed) or DER files, in chain order (leaf,
    intermediates, root) whatever the order of the files."""
    certs: list[x509.Certificate] = []
    for path in paths:
        found = load_certificates(path)
        for cert in found:
            try:
                pin_of_der(cert.public_bytes(serialization.Encoding.DER))
            except ValueError as exc:  # parsed leniently, but no strict DER: it has no pin
                raise CliError(
                    f"{path!r} holds a certificate that is not strict DER, so it has no pin "
                    f"(a pinned client refuses it): {exc}"
                ) from None
        certs.extend(found)
    ordered = order_chain(certs)
    return describe_chain(
        [c for c, _ in ordered],
        sources=["file"] * len(ordered),
        verified=None,
        roles=[role for _, role in ordered],
    )


def load_key_file(path: str) -> CertRow:
    """A backup key's pin: a public or private key, PEM or DER."""
    data = _read(path, "key")
    what = describe_file(data)
    if what.endswith("certificate"):
        raise CliError(f"{path!r} is {what}, not a key; use --cert for a certificate's pin")
    for public, private in (
        (serialization.load_pem_public_key, serialization.load_pem_private_key),
        (serialization.load_der_public_key, serialization.load_der_private_key),
    ):
        try:
            key: object = public(data)
        except (ValueError, TypeError):
            try:
                key = private(data, password=None).public_key()
            except (ValueError, TypeError):
                continue
        return backup_row(key, f"backup key {os.path.basename(path)}")
    raise CliError(f"{path!r} is {what}, not a readable public or private key (PEM or DER)")


def _format_table(rows: Sequence[CertRow], now: datetime) -> str:
    header = ("#", "role", "not after", "days", "key", "source", "verified", "pin")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        days = row.days_left(now)
        lines.append(
            (
                "-" if row.depth is None else str(row.depth),
                row.role,
                "-" if row.not_after is None else row.not_after.strftime("%Y-%m-%d"),
                "-" if days is None else str(days),
                row.key,
                row.source,
                "" if row.verified is None else ("yes" if row.verified else "no"),
                row.pin,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            continue
        row = rows[i - 1]
        out.append(f"    subject: {row.subject}")
        if row.issuer:
            out.append(f"    issuer:  {row.issuer}")
    return "\n".join(out) + "\n"


def _config_hosts(
    args: argparse.Namespace, target_host: str | None, rows: Sequence[CertRow]
) -> list[str]:
    if args.host:
        return list(args.host)
    if target_host:
        return [target_host]
    names = [n for row in rows if row.role == "leaf" for n in row.names]
    if names:
        return list(dict.fromkeys(names))
    raise CliError(
        "--format needs the host to pin: the certificates name no DNS host (no leaf with a "
        "subjectAltName); give --host NAME"
    )


def cmd_pins(args: argparse.Namespace) -> int:
    if args.insecure and args.format:
        raise CliError("--insecure is only for inspecting; it cannot emit a configuration")
    if not (args.target or args.cert or args.key):
        raise CliError("give HOST[:PORT] to connect to, or --cert FILE / --key FILE")
    if args.target and args.cert:
        # Mixing a served chain with files would pin certificates the server does not send.
        raise CliError(
            "give either HOST[:PORT] to read the chain from the server, or --cert files, not "
            "both (--key backups go with either)"
        )
    rows: list[CertRow] = []
    target_host = None
    if args.target:
        target_host, port = parse_target(args.target)
        if args.insecure:
            print(
                "WARNING: --insecure: this chain was NOT verified. Anyone on the path could have "
                "sent it. Do not pin it without checking it another way.",
                file=sys.stderr,
            )
        rows += fetch_chain(args, target_host, port)
    rows += load_cert_files(args.cert or [])
    rows += [load_key_file(path) for path in args.key or []]
    now = datetime.now(timezone.utc)
    if not args.format:
        sys.stdout.write(_format_table(rows, now))
        return 0
    chosen = select(rows, args.pin or ["leaf", "intermediate"])
    if len(chosen) < 2:
        print(
            f"warning: only {len(chosen)} pin would be emitted. Add a backup: generate a key "
            "pair kept offline and pass --key backup.pub, so a lost or rotated key does not "
            "lock clients out.",
            file=sys.stderr,
        )
    if not chosen:
        raise CliError("no certificate matches the --pin choice")
    expires = args.expires
    if expires is None:
        dated = [r.not_after for r in chosen if r.not_after is not None]
        expires = min(dated).date() if dated else None
    hosts = _config_hosts(args, target_host, rows)
    _, notes = host_entries(args.format, hosts, args.include_subdomains)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        text = render(
            args.format,
            hosts,
            [r.pin for r in chosen],
            include_subdomains=args.include_subdomains,
            expires=expires,
        )
    except PinConfigError as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(text)
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinsdk",
        description="Certificate pinning with signed dynamic pin updates: read a server's "
        "pins, make signing keys, sign and verify pin documents, run the demo. "
        "Exit status: 0 ok, 1 a document did not verify, 2 bad usage or input, 3 network/TLS.",
    )
    parser.add_argument("--version", action="version", version=f"pinsdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = sub.add_parser(
        "keygen",
        help="create a signing key pair",
        description="Create a key pair that signs pin documents: the private key goes to KEY "
        "(mode 0600), the public key clients trust to KEY.pub. Prints the public key and its "
        "keyid. Never overwrites a file.",
    )
    keygen.add_argument(
        "--alg",
        choices=["ed25519", "p256"],
        default="ed25519",
        help="signature algorithm: Ed25519 (default) or ECDSA P-256",
    )
    keygen.add_argument(
        "--out",
        required=True,
        metavar="KEY",
        help="private key path (mode 0600); the public key goes to KEY.pub",
    )
    keygen.set_defaults(func=cmd_keygen)

    sign = sub.add_parser(
        "sign",
        help="sign a policy JSON as a pin update document",
        description="Sign a pin policy (JSON with 'domains') as a DSSE pin document that "
        "DynamicPins clients accept; the result is checked with the signers' public keys "
        "before it is written.",
    )
    sign.add_argument("policy", metavar="POLICY.json", help="the unsigned pin policy to sign")
    sign.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="KEY",
        help="private key PEM or a signer URI (hsm:…, gcpkms:…, awskms:…, azurekms:…; "
        "needs pinsdk[signers]); repeat for threshold signing",
    )
    sign.add_argument(
        "--public-key",
        action="append",
        metavar="PUB",
        help="public key of a KMS signer URI, one per URI in order (hsm: reads the token)",
    )
    sign.add_argument(
        "--version",
        type=int,
        required=True,
        metavar="N",
        help="document version; must exceed the version clients hold",
    )
    sign.add_argument(
        "--expires",
        required=True,
        metavar="WHEN",
        help="30d, 12h, 90m, 3600s, 2w from now, or an RFC 3339 date-time",
    )
    sign.add_argument(
        "--refresh-interval",
        type=float,
        metavar="SECONDS",
        help="suggested polling interval for clients (clamped to 60 s - 7 days)",
    )
    sign.add_argument(
        "--new-key",
        action="append",
        metavar="PUB",
        help="rotate to this public key (repeat); sign with old and new keys",
    )
    sign.add_argument(
        "--new-threshold",
        type=int,
        default=1,
        metavar="K",
        help="with --new-key: how many of the new keys must sign later documents (default 1)",
    )
    sign.add_argument(
        "--allow-empty",
        action="store_true",
        help="sign a policy whose 'domains' is [] (unpins every host on every client)",
    )
    sign.add_argument(
        "--allow-expired-entries",
        action="store_true",
        help="sign even though some entries' 'expires' has passed (they pin nothing)",
    )
    sign.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    sign.add_argument(
        "--host-groups",
        action="store_true",
        help="write hosts that share pins as host groups (a smaller document; clients of "
        "pinsdk versions without host groups refuse it)",
    )
    _add_limit_flags(sign, "refuse to sign unless the document holds")
    sign.set_defaults(func=cmd_sign)

    verify = sub.add_parser(
        "verify",
        help="verify a pin update document",
        description="Check a signed pin document as a client would (signatures, format, "
        "expiry) and summarise it: version, domains, signers, key rotation, expired entries.",
    )
    verify.add_argument("file", metavar="FILE", help="the signed pin document")
    verify.add_argument(
        "--trusted-key",
        action="append",
        required=True,
        metavar="PUB",
        help="a public key clients trust (KEY.pub from keygen); repeat",
    )
    verify.add_argument(
        "--threshold",
        type=int,
        default=1,
        metavar="K",
        help="how many distinct trusted keys must have signed (default 1)",
    )
    verify.add_argument(
        "--allow-expired",
        action="store_true",
        help="check signatures and content of an expired document",
    )
    verify.add_argument(
        "--warn-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="list entries that expire within DAYS days (default 30)",
    )
    _add_limit_flags(verify, "accept")
    verify.set_defaults(func=cmd_verify)

    pins = sub.add_parser(
        "pins",
        help="show a server's chain and its pins, or emit a pinning configuration",
        description="Connect to HOST[:PORT] with TLS (or read --cert/--key files) and print "
        "the chain with each certificate's SPKI pin; with --format, print a ready configuration.",
    )
    pins.add_argument(
        "target",
        nargs="?",
        metavar="HOST[:PORT]",
        help="server to connect to: HOST, HOST:PORT, [IPv6]:PORT or an https:// URL",
    )
    pins.add_argument(
        "--cafile", metavar="FILE", help="trust this CA bundle instead of the default store"
    )
    pins.add_argument(
        "--servername", metavar="NAME", help="SNI and hostname to verify (default: HOST)"
    )
    pins.add_argument(
        "--insecure", action="store_true", help="skip verification, only to inspect (no --format)"
    )
    pins.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="connect and handshake timeout (default 10)",
    )
    pins.add_argument(
        "--cert",
        action="append",
        metavar="FILE",
        help="certificate file (PEM, PEM bundle or DER) instead of HOST; repeat, any order",
    )
    pins.add_argument(
        "--key",
        action="append",
        metavar="FILE",
        help="public or private key file: the pin of a backup key; repeat",
    )
    pins.add_argument("--format", choices=FORMATS, help="emit a configuration in this format")
    pins.add_argument(
        "--pin",
        action="append",
        choices=["leaf", "intermediate", "root", "all"],
        help="which certificates to pin (default: leaf and intermediate); repeat",
    )
    pins.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="host name or pattern for the configuration; repeat (default: HOST, or the "
        "leaf certificate's DNS names)",
    )
    pins.add_argument(
        "--include-subdomains",
        action="store_true",
        help="the configuration also covers every subdomain of the host",
    )
    pins.add_argument(
        "--expires",
        type=_date,
        metavar="YYYY-MM-DD",
        help="pin expiry for the configuration (default: earliest not-after)",
    )
    pins.set_defaults(func=cmd_pins)

    add_check_parser(sub)
    add_cosign_parser(sub)
    sub.add_parser(
        "demo",
        help="the end-to-end demo on 127.0.0.1 (see pinsdk demo --help)",
        description="The end-to-end demo on 127.0.0.1 (options: pinsdk demo --help).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pinsdk`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # the demo owns its options, --help included
        try:
            from ._demo.demo import main as demo_main
        except ModuleNotFoundError as exc:  # its CAs come from an optional dependency
            if exc.name != "trustme":
                raise
            print(
                "pinsdk demo: error: needs trustme, in the 'demo' extra: pip install '.[demo]' "
                "in a checkout of pinsdk, or pip install trustme",
                file=sys.stderr,
            )
            return 2
        return demo_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="pinsdk: warning: %(message)s"
    )
    try:
        result: int = args.func(args)
    except CliError as exc:
        print(f"pinsdk {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    return result


if __name__ == "__main__":
    raise SystemExit(main())
