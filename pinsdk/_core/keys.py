"""Signing keys for pin documents: Ed25519 and ECDSA P-256 (pure code).

The algorithm always comes from the trusted key itself, never from the document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import PinConfigError

__all__ = [
    "KeySet",
    "Signer",
    "SigningKey",
    "TrustedKey",
    "keyid_of",
    "load_private_key",
]

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKeyLike = str | bytes | PublicKey
PrivateKeyLike = str | bytes | PrivateKey


def _spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def keyid_of(key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER."""
    return hashlib.sha256(_spki_der(key)).hexdigest()


def _check_algorithm(key: object, what: str) -> str:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        raise PinConfigError(f"{what}: ECDSA curve {key.curve.name} is not supported; use P-256")
    raise PinConfigError(
        f"{what}: {type(key).__name__} is not supported; use an Ed25519 or ECDSA P-256 key"
    )


@attrs.frozen
class TrustedKey:
    """A public key trusted to sign pin documents."""

    keyid: str
    algorithm: str
    key: PublicKey = attrs.field(eq=False, repr=False)

    @classmethod
    def load(cls, key: PublicKeyLike) -> TrustedKey:
        """Accept a PEM public key (``str`` or ``bytes``) or a cryptography key object."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        if isinstance(key, bytes):
            try:
                loaded = serialization.load_pem_public_key(key)
            except ValueError as exc:
                raise PinConfigError(f"not a PEM public key: {exc}") from None
        else:
            loaded = key
        algorithm = _check_algorithm(loaded, "trusted key")
        public: PublicKey = loaded  # type: ignore[assignment]
        return cls(keyid=keyid_of(public), algorithm=algorithm, key=public)

    @property
    def pem(self) -> str:
        """The key as a PEM SubjectPublicKeyInfo."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` over ``message`` is valid for this key."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                if len(signature) != 64:
                    return False
                self.key.verify(signature, message)
                return True
            candidates = [signature]
            if len(signature) == 64:  # raw r||s, as WebCrypto and JOSE write it
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                candidates.insert(0, encode_dss_signature(r, s))
            for candidate in candidates:
                try:
                    self.key.verify(candidate, message, ec.ECDSA(hashes.SHA256()))
                    return True
                except (InvalidSignature, ValueError):
                    continue
            return False
        except (InvalidSignature, ValueError):
            return False


@attrs.frozen
class KeySet:
    """The trusted keys and how many of them must sign."""

    keys: tuple[TrustedKey, ...]
    threshold: int

    @classmethod
    def build(cls, keys: Iterable[PublicKeyLike], threshold: int) -> KeySet:
        """Load and check keys; duplicates count once; 1 ≤ threshold ≤ distinct keys."""
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            keys = [keys]
        loaded: dict[str, TrustedKey] = {}
        for key in keys:
            trusted = TrustedKey.load(key)
            loaded.setdefault(trusted.keyid, trusted)
        if not loaded:
            raise PinConfigError("at least one trusted key is needed")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise PinConfigError(f"threshold must be a positive integer, not {threshold!r}")
        if threshold > len(loaded):
            raise PinConfigError(
                f"threshold {threshold} is more than the {len(loaded)} distinct trusted keys"
            )
        return cls(keys=tuple(loaded.values()), threshold=threshold)

    def to_dict(self) -> dict[str, object]:
        """The payload's ``keys`` shape: ``{"trusted": [PEM…], "threshold": k}``."""
        return {"trusted": [k.pem for k in self.keys], "threshold": self.threshold}


@attrs.frozen
class SigningKey:
    """A private key that signs pin documents."""

    keyid: str
    key: PrivateKey = attrs.field(eq=False, repr=False)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature, or DER-encoded ECDSA P-256/SHA-256 signature."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(message)
        return self.key.sign(message, ec.ECDSA(hashes.SHA256()))

    @property
    def public(self) -> TrustedKey:
        """The matching public key."""
        return TrustedKey.load(self.key.public_key())


def load_private_key(key: PrivateKeyLike, *, password: bytes | None = None) -> SigningKey:
    """Accept a PEM private key (``str`` or ``bytes``) or a cryptography key object."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    if isinstance(key, bytes):
        try:
            loaded = serialization.load_pem_private_key(key, password=password)
        except (ValueError, TypeError) as exc:
            raise PinConfigError(f"not a usable PEM private key: {exc}") from None
    else:
        loaded = key
    _check_algorithm(loaded, "signing key")
    private: PrivateKey = loaded  # type: ignore[assignment]
    return SigningKey(keyid=keyid_of(private.public_key()), key=private)


class Signer(Protocol):
    """Anything that signs pin documents: a :class:`SigningKey`, or a hardware or KMS
    signer. ``public`` is the matching public key (its ``keyid`` names the signature);
    ``sign`` returns an Ed25519 signature or an ECDSA P-256/SHA-256 one (DER or raw)."""

    @property
    def public(self) -> TrustedKey: ...

    def sign(self, message: bytes) -> bytes: ...
