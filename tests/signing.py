"""Helpers to build pin documents in tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from pinsdk._core.timeutil import format_datetime


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def payload(
    version: int,
    domains: list[dict[str, Any]] | None = None,
    *,
    expires_in: float = 3600,
    issued_ago: float = 60,
    **extra: Any,
) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    doc: dict[str, Any] = {
        "spec_version": 1,
        "version": version,
        "issued_at": format_datetime(now - timedelta(seconds=issued_ago)),
        "expires": format_datetime(now + timedelta(seconds=expires_in)),
        "domains": domains or [],
        "deny": [],
    }
    doc.update(extra)
    return doc
