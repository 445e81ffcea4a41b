"""Describing certificate chains and emitting pinning configurations (pure code).

Used by ``pinsdk pins``: one row per certificate, a choice of pins, and the same pins
written as a pinsdk policy, OkHttp Kotlin, Android XML, a TrustKit dictionary or an
HPKP header.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from ._core.pins import pin_of_der, spki_pin_of_key
from ._core.policy import DomainPins, PinPolicy

__all__ = ["FORMATS", "CertRow", "describe_chain", "render", "select"]

FORMATS = ("pinsdk", "okhttp", "android", "trustkit", "hpkp")
Role = Literal["leaf", "intermediate", "root", "backup"]


def key_description(key: object) -> str:
    """``RSA 2048``, ``EC P-256``, ``Ed25519`` …"""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {names.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


@attrs.frozen
class CertRow:
    """One line of the chain table (or a backup key, which has no certificate)."""

    depth: int | None
    role: Role
    subject: str
    issuer: str
    not_after: datetime | None
    key: str
    pin: str
    source: str  # "server", "store", "file" or "key"
    verified: bool | None  # None: not known (offline or --insecure)

    def days_left(self, now: datetime) -> int | None:
        """Whole days until ``not_after`` (negative once expired)."""
        return None if self.not_after is None else (self.not_after - now).days


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def describe_chain(
    chain: Sequence[x509.Certificate],
    *,
    sources: Sequence[str],
    verified: bool | None,
) -> list[CertRow]:
    """Rows for a chain ordered leaf first; the last certificate is the root if self-signed."""
    rows = []
    for depth, (cert, source) in enumerate(zip(chain, sources, strict=True)):
        last = depth == len(chain) - 1
        role: Role = "leaf" if depth == 0 else "intermediate"
        if depth > 0 and last and _is_self_signed(cert):
            role = "root"
        rows.append(
            CertRow(
                depth=depth,
                role=role,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                not_after=cert.not_valid_after_utc,
                key=key_description(cert.public_key()),
                pin=pin_of_der(cert.public_bytes(serialization.Encoding.DER)),
                source=source,
                verified=verified,
            )
        )
    # With only a leaf and its root, the root is the issuing CA: pinning "the intermediate"
    # then means pinning that CA.
    return rows


def backup_row(key: object, label: str) -> CertRow:
    """A row for a key without a certificate (a backup key)."""
    return CertRow(
        depth=None,
        role="backup",
        subject=label,
        issuer="",
        not_after=None,
        key=key_description(key),
        pin=spki_pin_of_key(key),
        source="key",
        verified=None,
    )


def select(rows: Sequence[CertRow], which: Iterable[str]) -> list[CertRow]:
    """The rows to pin: ``leaf``, ``intermediate``, ``root`` or ``all``; backups always.

    ``intermediate`` means every CA between leaf and root; when there is none, the
    issuing CA (the root) stands in for it.
    """
    wanted = set(which)
    if "all" in wanted:
        wanted = {"leaf", "intermediate", "root"}
    chosen: list[CertRow] = []
    has_intermediate = any(r.role == "intermediate" for r in rows)
    for row in rows:
        take = row.role in wanted or row.role == "backup"
        if row.role == "root" and "intermediate" in wanted and not has_intermediate:
            take = True
        if take and row.pin not in {c.pin for c in chosen}:
            chosen.append(row)
    return chosen


def _pin_b64(pin: str) -> str:
    return pin.removeprefix("sha256/")


def render(
    fmt: str,
    host: str,
    pins: Sequence[str],
    *,
    include_subdomains: bool = False,
    expires: date | None = None,
) -> str:
    """The configuration text for ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "pinsdk":
        expiry = (
            None
            if expires is None
            else datetime(expires.year, expires.month, expires.day, tzinfo=timezone.utc)
        )
        policy = PinPolicy(
            [DomainPins(host, pins, include_subdomains=include_subdomains, expires=expiry)]
        )
        return json.dumps(policy.to_dict(), indent=2) + "\n"
    if fmt == "okhttp":
        pattern = f"**.{host}" if include_subdomains else host
        lines = ["val certificatePinner = CertificatePinner.Builder()"]
        lines += [f'    .add("{pattern}", "{pin}")' for pin in pins]
        lines += ["    .build()", ""]
        return "\n".join(lines)
    if fmt == "android":
        expiration = "" if expires is None else f" expiration={quoteattr(expires.isoformat())}"
        sub = "true" if include_subdomains else "false"
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            "<network-security-config>",
            "    <domain-config>",
            f'        <domain includeSubdomains="{sub}">{escape(host)}</domain>',
            f"        <pin-set{expiration}>",
        ]
        lines += [f'            <pin digest="SHA-256">{_pin_b64(pin)}</pin>' for pin in pins]
        lines += ["        </pin-set>", "    </domain-config>", "</network-security-config>", ""]
        return "\n".join(lines)
    if fmt == "trustkit":
        lines = [
            "let trustKitConfig: [String: Any] = [",
            "    kTSKSwizzleNetworkDelegates: false,",
            "    kTSKPinnedDomains: [",
            f"        {json.dumps(host)}: [",
            "            kTSKEnforcePinning: true,",
            f"            kTSKIncludeSubdomains: {'true' if include_subdomains else 'false'},",
        ]
        if expires is not None:
            lines.append(f'            kTSKExpirationDate: "{expires.isoformat()}",')
        lines.append("            kTSKPublicKeyHashes: [")
        lines += [f'                "{_pin_b64(pin)}",' for pin in pins]
        lines += ["            ],", "        ],", "    ],", "]", ""]
        return "\n".join(lines)
    if fmt == "hpkp":
        parts = [f'pin-sha256="{_pin_b64(pin)}"' for pin in pins] + ["max-age=5184000"]
        if include_subdomains:
            parts.append("includeSubDomains")
        return "Public-Key-Pins: " + "; ".join(parts) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
