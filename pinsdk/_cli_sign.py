"""``pinsdk cosign``: one more signature on a signed document, each key holder on their
own machine; and the signers of ``sign``/``cosign`` (key files or signer URIs)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence

from ._cli_inputs import CliError, load_private_key_pem, load_public_key_pem
from ._cli_inputs import read_input as _read
from ._core.cosign import add_signature
from ._core.errors import PinConfigError
from ._core.keys import Signer
from ._signers import is_signer_uri, load_signer

__all__ = ["add_parser", "load_signers", "write_atomically"]


def load_signers(specs: Sequence[str], public_keys: Sequence[str] | None) -> list[Signer]:
    """``--key`` values (files or URIs), with one ``--public-key`` per URI, in order."""
    uris = [s for s in specs if is_signer_uri(s)]
    pubs = list(public_keys or [])
    if pubs and len(pubs) != len(uris):
        raise CliError(
            f"{len(pubs)} --public-key for {len(uris)} signer URI(s): give one per URI "
            "(in the same order), or none to read hsm: keys from their token"
        )
    pub_for = dict(zip(uris, pubs, strict=False))
    signers: list[Signer] = []
    try:
        for spec in specs:
            pem = load_public_key_pem(pub_for[spec], "--public-key") if spec in pub_for else None
            signer = load_signer(spec, lambda path, _: load_private_key_pem(path, "--key"), pem)
            if any(s.public.keyid == signer.public.keyid for s in signers):
                print(
                    f"warning: --key {spec!r} repeats a key already given: counted once",
                    file=sys.stderr,
                )
                continue
            signers.append(signer)
    except PinConfigError as exc:
        raise CliError(str(exc)) from None
    return signers


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename: a reader sees the old file or the new
    one, never half of either (the file's mode is kept)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".pinsdk-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_cosign(args: argparse.Namespace) -> int:
    data = _read(args.file, "document")
    pubs = [args.public_key] if args.public_key else None
    (signer,) = load_signers([args.key], pubs)
    try:
        result = add_signature(data, signer)
    except PinConfigError as exc:
        if _looks_like_policy(data):
            raise CliError(
                f"{args.file!r} is a policy, not a signed document: sign it first with "
                "pinsdk sign, then co-sign the file that writes"
            ) from None
        raise CliError(f"{args.file!r}: {exc}") from None
    out = args.out or args.file
    if not result.added:
        print(
            f"key {result.keyid} has signed {args.file!r} already: nothing added "
            f"({result.signatures} signature(s))",
            file=sys.stderr,
        )
        if args.out:  # asked for a file: write it, unchanged
            _write(out, result.envelope)
        return 0
    _write(out, result.envelope)
    print(
        f"added the signature of key {result.keyid} -> {out} ({result.signatures} signatures)",
        file=sys.stderr,
    )
    return 0


def _write(path: str, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise CliError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _looks_like_policy(data: bytes) -> bool:
    try:
        raw = json.loads(data)
    except ValueError:
        return False
    return isinstance(raw, dict) and "domains" in raw and "payload" not in raw


def cmd_public_key(args: argparse.Namespace) -> int:
    pubs = [args.public_key] if args.public_key else None
    (signer,) = load_signers([args.key], pubs)
    public = signer.public
    print(public.pem, end="")
    print(f"keyid: {public.keyid}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pinsdk cosign`` and ``pinsdk public-key``."""
    cosign = sub.add_parser(
        "cosign",
        help="add one signature to a signed document (its payload untouched)",
        description="Add the signature of KEY to the signed document FILE without touching "
        "its payload, in place (atomically) unless --out. A key that signed already adds "
        "nothing. Each key holder runs this on their own machine until the threshold is met.",
    )
    cosign.add_argument(
        "file", metavar="DOCUMENT", help="the signed pin document to add a signature to"
    )
    cosign.add_argument(
        "--key",
        required=True,
        metavar="KEY",
        help="private key PEM, or a signer URI (hsm:…, gcpkms:…, awskms:…, azurekms:…; "
        "needs pinsdk[signers])",
    )
    cosign.add_argument(
        "--public-key",
        metavar="PUB",
        help="the public key of a KMS signer URI (hsm: keys are read from the token)",
    )
    cosign.add_argument("--out", metavar="FILE", help="write here instead of in place")
    cosign.set_defaults(func=cmd_cosign)

    public = sub.add_parser(
        "public-key",
        help="print the public key (PEM) and keyid of a signing key or signer URI",
        description="Print the public key to ship in apps (trusted_keys) for a private key "
        "file or a signer URI: for hsm: URIs it is read from the token.",
    )
    public.add_argument("--key", required=True, metavar="KEY", help="private key PEM or URI")
    public.add_argument("--public-key", metavar="PUB", help=argparse.SUPPRESS)
    public.set_defaults(func=cmd_public_key)
