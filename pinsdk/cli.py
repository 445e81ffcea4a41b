"""The ``pinsdk`` command: keys, signing and verifying pin documents, and the demo.

Exit status: 0 success; 1 a document did not verify (``verify``) or the demo misbehaved;
2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .envelope import sign_envelope, verify_envelope
from .errors import PinConfigError, UpdateRejectedError
from .keys import KeySet, TrustedKey, load_private_key
from .policy import PinPolicy
from .timeutil import format_datetime, parse_datetime

__all__ = ["main"]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class CliError(Exception):
    """A usage or input problem: printed, exit status 2."""


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
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


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


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        raw = json.loads(_read(args.policy, "policy").decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"policy {args.policy!r} is not valid JSON: {exc}") from None
    try:
        policy = PinPolicy.from_dict(raw)
    except PinConfigError as exc:
        raise CliError(f"policy {args.policy!r}: {exc}") from None
    if args.version < 1:
        raise CliError("--version must be at least 1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    expires = parse_expiry(args.expires, now)
    if expires <= now:
        raise CliError(f"--expires {args.expires!r} is not in the future")
    shape = policy.to_dict()
    payload: dict[str, Any] = {
        "spec_version": 1,
        "version": args.version,
        "issued_at": format_datetime(now),
        "expires": format_datetime(expires),
        "domains": shape["domains"],
        "deny": shape["deny"],
    }
    if shape.get("report_uri"):
        payload["report_uri"] = shape["report_uri"]
    if args.refresh_interval is not None:
        payload["refresh_interval"] = args.refresh_interval
    try:
        signers = [load_private_key(_read(path, "key")) for path in args.key]
        if args.new_key:
            new_keys = KeySet.build([_read(p, "new key") for p in args.new_key], args.new_threshold)
            payload["keys"] = new_keys.to_dict()
        envelope = sign_envelope(payload, [s.key for s in signers])
        # Check the result with the signers' own public keys before handing it out.
        verify_envelope(envelope, KeySet.build([s.key.public_key() for s in signers], 1))
    except (PinConfigError, UpdateRejectedError) as exc:
        raise CliError(str(exc)) from None
    if args.out:
        try:
            with open(args.out, "wb") as f:
                f.write(envelope)
        except OSError as exc:
            raise CliError(f"cannot write {args.out!r}: {exc}") from None
        print(
            f"signed version {args.version} ({len(shape['domains'])} domains, expires "
            f"{payload['expires']}) with {len(signers)} key(s) -> {args.out}",
            file=sys.stderr,
        )
    else:
        sys.stdout.buffer.write(envelope)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    data = _read(args.file, "document")
    try:
        keys = KeySet.build([_read(p, "trusted key") for p in args.trusted_key], args.threshold)
    except PinConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        verified = verify_envelope(data, keys, check_expiry=not args.allow_expired)
    except UpdateRejectedError as exc:
        print(f"REJECTED: {exc.reason}")
        return 1
    print(
        f"OK: version {verified.version}, {len(verified.policy.domains)} domains, "
        f"{len(verified.policy.deny)} denied pins"
    )
    print(
        f"issued {format_datetime(verified.issued_at)}, expires {format_datetime(verified.expires)}"
    )
    signers = ", ".join(sorted(verified.signed_by))
    print(f"signed by {len(verified.signed_by)} trusted key(s): {signers}")
    if verified.rotated_keys is not None:
        rotated = verified.rotated_keys
        print(f"rotates keys to {len(rotated.keys)} key(s), threshold {rotated.threshold}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinsdk", description="Certificate pinning with signed dynamic pin updates."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="create a signing key pair")
    keygen.add_argument("--alg", choices=["ed25519", "p256"], default="ed25519")
    keygen.add_argument(
        "--out",
        required=True,
        metavar="KEY",
        help="private key path (mode 0600); the public key goes to KEY.pub",
    )
    keygen.set_defaults(func=cmd_keygen)

    sign = sub.add_parser("sign", help="sign a policy JSON as a pin update document")
    sign.add_argument("policy", metavar="POLICY.json")
    sign.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="KEY",
        help="private key PEM; repeat for threshold signing",
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
    sign.add_argument("--new-threshold", type=int, default=1, metavar="K")
    sign.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    sign.set_defaults(func=cmd_sign)

    verify = sub.add_parser("verify", help="verify a pin update document")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--trusted-key", action="append", required=True, metavar="PUB")
    verify.add_argument("--threshold", type=int, default=1, metavar="K")
    verify.add_argument(
        "--allow-expired",
        action="store_true",
        help="check signatures and content of an expired document",
    )
    verify.set_defaults(func=cmd_verify)

    sub.add_parser("demo", help="the end-to-end demo on 127.0.0.1 (see pinsdk demo --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pinsdk`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # the demo owns its options, --help included
        from .demo import main as demo_main

        return demo_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except CliError as exc:
        print(f"pinsdk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
