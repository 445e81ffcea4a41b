"""spki_pin and pin validation (pure code)."""

from __future__ import annotations

import base64
import hashlib

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pinsdk
from pinsdk._core.pins import ChainPinCache, parse_pin

GOOD = "sha256/" + base64.b64encode(hashlib.sha256(b"k").digest()).decode()


def test_spki_pin_of_every_certificate_form(api_cert: trustme.LeafCert) -> None:
    pem = api_cert.cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert pinsdk.spki_pin(pem) == expected
    assert pinsdk.spki_pin(pem.decode()) == expected
    assert pinsdk.spki_pin(der) == expected
    assert pinsdk.spki_pin(cert) == expected


def test_spki_pin_rejects_garbage() -> None:
    with pytest.raises(pinsdk.PinConfigError, match="not a valid PEM or DER certificate"):
        pinsdk.spki_pin(b"not a certificate")
    with pytest.raises(TypeError, match="not int"):
        pinsdk.spki_pin(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ("sha1/" + base64.b64encode(b"x" * 20).decode(), "algorithm 'sha1' is not supported"),
        ("md5/" + base64.b64encode(b"x" * 16).decode(), "algorithm 'md5' is not supported"),
        ("sha512/" + base64.b64encode(b"x" * 64).decode(), "'sha512' is not supported"),
        ("sha256/" + base64.b64encode(b"x" * 31).decode(), "decodes to 31 bytes"),
        ("sha256/" + "!" * 44, "not valid base64"),
        ("sha256/" + base64.b64encode(b"x" * 32).decode().rstrip("="), "not valid base64"),
        ("sha256/" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "not valid base64"),
        (GOOD[:-2] + "B=", "canonical"),
        ("sha256:" + GOOD[7:], r"write 'sha256/' \(a slash\)"),
        (GOOD[7:], "a bare base64 digest"),
        (hashlib.sha256(b"k").hexdigest(), "hex SHA-256 digest"),
        ("pin-sha256=" + GOOD[7:], "with double quotes"),
        ("", "does not start with 'sha256/'"),
    ],
)
def test_bad_pins_are_rejected_with_their_value(pin: str, message: str) -> None:
    with pytest.raises(pinsdk.PinConfigError, match=message) as info:
        parse_pin(pin)
    assert repr(pin) in str(info.value)


def test_non_string_pin() -> None:
    with pytest.raises(pinsdk.PinConfigError, match="pin must be a string"):
        parse_pin(b"sha256/abc")


def test_cache_is_bounded_and_correct(api_cert: trustme.LeafCert, ca: trustme.CA) -> None:
    ders = [
        x509.load_pem_x509_certificate(p.bytes()).public_bytes(serialization.Encoding.DER)
        for p in (*api_cert.cert_chain_pems, ca.cert_pem)
    ]
    cache = ChainPinCache(max_entries=2)
    first = cache.chain_pins(ders)
    assert first == tuple(pinsdk.spki_pin(d) for d in ders)
    assert len(cache) <= 2
    assert cache.chain_pins(ders) == first
    with pytest.raises(ValueError, match="at least 1"):
        ChainPinCache(0)


def _self_signed(key: object) -> x509.Certificate:
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    algorithm = None if type(key).__name__.startswith("Ed") else hashes.SHA256()
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


def test_fast_spki_extraction_equals_cryptography() -> None:
    """The cold path hashes the SPKI bytes of the DER; it must equal the parsed key's."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from pinsdk._core.pins import pin_of_der, spki_der_of, spki_pin_of_key

    keys = [
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ]
    for key in keys:
        cert = _self_signed(key)
        der = cert.public_bytes(serialization.Encoding.DER)
        assert spki_der_of(der) == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert pin_of_der(der) == spki_pin_of_key(cert.public_key()) == pinsdk.spki_pin(der)
    with pytest.raises((ValueError, IndexError)):
        spki_der_of(b"\x30\x03\x02\x01\x01")
    with pytest.raises(ValueError):
        pin_of_der(b"\x04\x00")  # neither walkable nor parsable: cryptography's error
