"""Signing keys named by a file or by a signer URI (PKCS#11 token, cloud KMS).

A URI goes to securesystemslib's Signer API (the optional extra ``pinsdk[signers]``);
pinsdk never speaks PKCS#11 or a KMS protocol itself. Only signing needs it: clients
verify the signatures with cryptography alone, like any other. The mapping:

- the keyid in our envelope is ours (SHA-256 of the SubjectPublicKeyInfo DER), handed to
  securesystemslib as the key's keyid, so its ``Signature.keyid`` is ours too;
- ``Signature.signature`` is hex; our envelope holds base64 of the same bytes (DER
  ECDSA, or a raw ``r||s`` or Ed25519 signature: the verifier reads each);
- every signature is verified with our own key before it is used.
"""

from __future__ import annotations

import getpass
import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlparse

import attrs

from ._core.errors import PinConfigError
from ._core.keys import Signer, TrustedKey, load_private_key

__all__ = ["PIN_ENV", "UriSigner", "is_signer_uri", "load_signer"]

# Where a PKCS#11 user PIN comes from when no terminal can ask for it.
PIN_ENV = "PINSDK_PKCS11_PIN"
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_SCHEMES = {
    "ed25519": "ed25519",
    "secp256r1": "ecdsa-sha2-nistp256",
}


def is_signer_uri(spec: str) -> bool:
    """``hsm:2?label=x``, ``gcpkms:projects/…``, ``awskms:…``, ``azurekms:…``: a URI,
    unless a file of that name exists (a key file always wins)."""
    return bool(_URI.match(spec)) and len(spec.split(":", 1)[0]) > 1 and not os.path.exists(spec)


@attrs.frozen
class UriSigner:
    """A securesystemslib signer seen as a pinsdk :class:`~pinsdk._core.keys.Signer`."""

    uri: str
    public: TrustedKey
    _signer: Any = attrs.field(repr=False)

    def sign(self, message: bytes) -> bytes:
        """Sign through securesystemslib; its hex signature becomes bytes."""
        try:
            signature = self._signer.sign(message)
        except Exception as exc:  # every backend raises its own kinds
            raise PinConfigError(f"signer {self.uri!r} failed: {exc}") from None
        try:
            return bytes.fromhex(signature.signature)
        except ValueError:
            raise PinConfigError(
                f"signer {self.uri!r} returned a signature that is not hex"
            ) from None


def _sslib() -> Any:
    """securesystemslib's signer module (the optional extra), typed loosely on purpose:
    pinsdk type-checks without it."""
    return importlib.import_module("securesystemslib.signer")


def _pin(_: str) -> str:
    pin = os.environ.get(PIN_ENV)
    if pin is not None:
        return pin
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("PKCS#11 user PIN: ")
    raise PinConfigError(f"the token needs its user PIN: set {PIN_ENV} or run on a terminal")


def _hsm_public_key(uri: str, secrets: Callable[[str], str]) -> Any:
    parsed = urlparse(uri)
    keyid = int(parsed.path) if parsed.path else None
    label = dict(parse_qsl(parsed.query)).get("label")
    _, key = _sslib().HSMSigner.import_(keyid, label, secrets)
    pem: str = key.keyval["public"]
    return pem.encode("ascii")


def load_uri_signer(uri: str, public_pem: bytes | None) -> UriSigner:
    """A signer for ``uri``; its public key from ``public_pem``, else (``hsm:``) the token."""
    try:
        sslib = _sslib()
    except ModuleNotFoundError:
        raise PinConfigError(
            f"--key {uri!r} is a signer URI, which needs the optional extra: "
            "pip install 'pinsdk[signers]'"
        ) from None
    scheme = uri.split(":", 1)[0].lower()
    try:
        if public_pem is not None:
            trusted = TrustedKey.load(public_pem)
        elif scheme == "hsm":
            trusted = TrustedKey.load(_hsm_public_key(uri, _pin))
        else:
            raise PinConfigError(
                f"--key {uri!r}: give the key's public key with --public-key PUB "
                "(pinsdk reads it from the token only for hsm: URIs)"
            )
        curve = getattr(getattr(trusted.key, "curve", None), "name", "ed25519")
        sslib_key = sslib.SSlibKey.from_crypto(
            trusted.key, keyid=trusted.keyid, scheme=_SCHEMES.get(curve)
        )
        signer = sslib.Signer.from_priv_key_uri(uri, sslib_key, _pin)
    except PinConfigError:
        raise
    except Exception as exc:  # securesystemslib and its backends raise many kinds
        raise PinConfigError(f"--key {uri!r}: cannot use this signer: {exc}") from None
    return UriSigner(uri, trusted, signer)


def load_signer(
    spec: str, read: Callable[[str, str], bytes], public_pem: bytes | None = None
) -> Signer:
    """A private key file (PEM), or a signer URI."""
    if is_signer_uri(spec):
        return load_uri_signer(spec, public_pem)
    if public_pem is not None:
        raise PinConfigError(f"--public-key is for signer URIs; {spec!r} is a key file")
    return load_private_key(read(spec, "key"))
