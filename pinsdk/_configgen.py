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

__all__ = [
    "FORMATS",
    "CertRow",
    "describe_chain",
    "dns_names",
    "host_entries",
    "render",
    "select",
]

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
    names: tuple[str, ...] = ()  # the certificate's DNS names (subjectAltName)

    def days_left(self, now: datetime) -> int | None:
        """Whole days until ``not_after`` (negative once expired)."""
        return None if self.not_after is None else (self.not_after - now).days


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of a certificate's subjectAltName, in certificate order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(san.get_values_for_type(x509.DNSName)))


def describe_chain(
    chain: Sequence[x509.Certificate],
    *,
    sources: Sequence[str],
    verified: bool | None,
    roles: Sequence[Role] | None = None,
) -> list[CertRow]:
    """Rows for a chain ordered leaf first; the last certificate is the root if self-signed
    (``roles``, when given, says each certificate's role instead)."""
    rows = []
    for depth, (cert, source) in enumerate(zip(chain, sources, strict=True)):
        last = depth == len(chain) - 1
        role: Role = "leaf" if depth == 0 else "intermediate"
        if depth > 0 and last and _is_self_signed(cert):
            role = "root"
        if roles is not None:
            role = roles[depth]
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
                names=dns_names(cert) if role == "leaf" else (),
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


# The formats with no wildcard host: a "*." or "**." pattern becomes its parent domain with
# subdomains included ("**." exactly; "*." widened to the parent and every depth).
_NO_WILDCARDS = {"android": "Android's network security config", "trustkit": "TrustKit"}


def host_entries(
    fmt: str, hosts: str | Sequence[str], include_subdomains: bool
) -> tuple[list[tuple[str, bool]], list[str]]:
    """The (host, include subdomains) entries ``fmt`` can express for ``hosts``, and a note
    for each wildcard that had to be translated."""
    names = [hosts] if isinstance(hosts, str) else list(hosts)
    if fmt not in _NO_WILDCARDS:
        return [(h, include_subdomains) for h in names], []
    merged: dict[str, bool] = {}
    notes = []
    for host in names:
        base = host.split(".", 1)[1] if host.startswith(("*.", "**.")) else host
        wild = base != host
        if wild:
            widened = "" if host.startswith("**.") else f" and deeper names than {host!r}"
            notes.append(
                f"{_NO_WILDCARDS[fmt]} has no wildcard hosts: {host!r} is written as {base!r} "
                f"with subdomains included, which also pins {base!r} itself{widened}"
            )
        merged[base] = merged.get(base, False) or wild or include_subdomains
    return list(merged.items()), notes


def render(
    fmt: str,
    host: str | Sequence[str],
    pins: Sequence[str],
    *,
    include_subdomains: bool = False,
    expires: date | None = None,
) -> str:
    """The configuration text for ``fmt`` (one of :data:`FORMATS`) pinning ``pins`` for
    ``host`` (one name or pattern, or several). For Android and TrustKit, which have no
    wildcard hosts, ``*.example.com`` becomes ``example.com`` with subdomains (see
    :func:`host_entries`)."""
    entries, _ = host_entries(fmt, host, include_subdomains)
    if fmt == "pinsdk":
        expiry = (
            None
            if expires is None
            else datetime(expires.year, expires.month, expires.day, tzinfo=timezone.utc)
        )
        policy = PinPolicy(
            [DomainPins(h, pins, include_subdomains=sub, expires=expiry) for h, sub in entries]
        )
        return json.dumps(policy.to_dict(), indent=2) + "\n"
    if fmt == "okhttp":
        lines = ["val certificatePinner = CertificatePinner.Builder()"]
        for h, sub in entries:
            pattern = h
            if sub:  # OkHttp's "**." is the name and every subdomain
                pattern = "**." + (h.split(".", 1)[1] if h.startswith("*") else h)
            lines += [f'    .add("{pattern}", "{pin}")' for pin in pins]
        lines += ["    .build()", ""]
        return "\n".join(lines)
    if fmt == "android":
        expiration = "" if expires is None else f" expiration={quoteattr(expires.isoformat())}"
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            "<network-security-config>",
            "    <domain-config>",
        ]
        lines += [
            f'        <domain includeSubdomains="{"true" if sub else "false"}">{escape(h)}</domain>'
            for h, sub in entries
        ]
        lines.append(f"        <pin-set{expiration}>")
        lines += [f'            <pin digest="SHA-256">{_pin_b64(pin)}</pin>' for pin in pins]
        lines += ["        </pin-set>", "    </domain-config>", "</network-security-config>", ""]
        return "\n".join(lines)
    if fmt == "trustkit":
        lines = [
            "let trustKitConfig: [String: Any] = [",
            "    kTSKSwizzleNetworkDelegates: false,",
            "    kTSKPinnedDomains: [",
        ]
        for h, sub in entries:
            lines += [
                f"        {json.dumps(h)}: [",
                "            kTSKEnforcePinning: true,",
                f"            kTSKIncludeSubdomains: {'true' if sub else 'false'},",
            ]
            if expires is not None:
                lines.append(f'            kTSKExpirationDate: "{expires.isoformat()}",')
            lines.append("            kTSKPublicKeyHashes: [")
            lines += [f'                "{_pin_b64(pin)}",' for pin in pins]
            lines += ["            ],", "        ],"]
        lines += ["    ],", "]", ""]
        return "\n".join(lines)
    if fmt == "hpkp":
        parts = [f'pin-sha256="{_pin_b64(pin)}"' for pin in pins] + ["max-age=5184000"]
        if include_subdomains:
            parts.append("includeSubDomains")
        return "Public-Key-Pins: " + "; ".join(parts) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
