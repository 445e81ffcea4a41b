"""Issue 12, item 1 (b): the certificate -> pin path agrees with cryptography or refuses.

Real certificates are re-encoded with tags and lengths in forms OpenSSL accepts but DER
forbids (high-tag-number tags, long or indefinite lengths, leading zeros) at one or two
elements, parents' lengths kept consistent, or with a tag or length byte overwritten.
Whatever comes out, ``pin_of_der`` either refuses (``NotDERError``) or gives exactly the
pin of the key cryptography's strict parser reads; the walk alone, when it and
cryptography both accept, returns the SubjectPublicKeyInfo cryptography re-encodes.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
import trustme
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pinsdk._core.pins import pin_of_der, spki_der_of, spki_pin_of_key


def _self_signed(key: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "prop.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _certificates() -> list[bytes]:
    ca = trustme.CA()
    mid = ca.create_child_ca()
    leaf = mid.issue_cert("a.prop.test", "127.0.0.1")
    pems = [ca.cert_pem.bytes(), mid.cert_pem.bytes(), leaf.cert_chain_pems[0].bytes()]
    ders = [
        x509.load_pem_x509_certificate(p).public_bytes(serialization.Encoding.DER) for p in pems
    ]
    ders.append(_self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    ders.append(_self_signed(ec.generate_private_key(ec.SECP384R1())))
    ders.append(_self_signed(ed25519.Ed25519PrivateKey.generate()))
    return ders


CERTS = _certificates()


# -- a tiny BER tree, our own, to re-encode certificates ----------------------------------


@attrs.define
class Node:
    tag: int
    children: list[Node] | None  # None: primitive, see raw
    raw: bytes = b""
    tag_form: str = "der"  # or "high": the tag number in high-tag-number form
    length_form: str = "der"  # or "long1", "long2", "zero", "indefinite"


def _parse(data: bytes, pos: int, end: int) -> tuple[Node, int]:
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        n = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    stop = pos + n
    if tag & 0x20:
        children = []
        inner = pos
        while inner < stop:
            child, inner = _parse(data, inner, stop)
            children.append(child)
        return Node(tag, children), stop
    return Node(tag, None, data[pos:stop]), stop


def _length(n: int, form: str) -> bytes:
    if form == "long1" and n < 0x100:
        return bytes([0x81, n])
    if form == "long2" and n < 0x10000:
        return bytes([0x82]) + n.to_bytes(2, "big")
    if form == "zero" and n < 0x10000:
        return bytes([0x83, 0]) + n.to_bytes(2, "big")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _encode(node: Node) -> bytes:
    content = node.raw if node.children is None else b"".join(_encode(c) for c in node.children)
    tag = bytes([node.tag])
    if node.tag_form == "high":
        tag = bytes([(node.tag & 0xE0) | 0x1F, node.tag & 0x1F])
    if node.length_form == "indefinite" and node.children is not None:
        return tag + b"\x80" + content + b"\x00\x00"
    return tag + _length(len(content), node.length_form) + content


def _nodes(node: Node) -> list[Node]:
    out = [node]
    for child in node.children or []:
        out.extend(_nodes(child))
    return out


def _tree(der: bytes) -> Node:
    node, end = _parse(der, 0, len(der))
    assert end == len(der)
    assert _encode(node) == der
    return node


FORMS = st.sampled_from(
    [("high", "der"), ("der", "long1"), ("der", "long2"), ("der", "zero"), ("der", "indefinite")]
)


@st.composite
def re_encoded(draw: st.DrawFn) -> bytes:
    """A certificate with one or two elements written in a non-DER form."""
    der = draw(st.sampled_from(CERTS))
    root = _tree(der)
    nodes = _nodes(root)
    # The elements the walk passes come first and most often: the TBS's own children.
    tbs_children = root.children[0].children if root.children and root.children[0].children else []
    pool = [*tbs_children, *tbs_children, *nodes]
    for _ in range(draw(st.integers(1, 2))):
        node = draw(st.sampled_from(pool))
        node.tag_form, node.length_form = draw(FORMS)
    return _encode(root)


@st.composite
def overwritten(draw: st.DrawFn) -> bytes:
    """A certificate with a tag or length byte overwritten (parents left as they were)."""
    der = bytearray(draw(st.sampled_from(CERTS)))
    positions: list[int] = []

    def walk(data: bytes, pos: int, end: int) -> None:
        while pos < end:
            positions.extend((pos, pos + 1))
            tag, n = data[pos], data[pos + 1]
            start = pos + 2
            if n & 0x80:
                count = n & 0x7F
                n = int.from_bytes(data[start : start + count], "big")
                start += count
            if tag & 0x20:
                walk(data, start, start + n)
            pos = start + n

    walk(bytes(der), 0, len(der))
    at = draw(st.sampled_from(positions[:60]))  # the head: certificate, TBS, its fields
    der[at] = draw(st.integers(0, 255))
    return bytes(der)


def _reference_pin(der: bytes) -> str | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        return spki_pin_of_key(cert.public_key())
    except ValueError:
        return None
    except UnsupportedAlgorithm:
        # Strict DER, but a key algorithm cryptography cannot build (an overwritten length
        # can swallow the parameters into the OID: 1.2.840.113549.1.1.1.5.0): the reference
        # has no key to judge the pin by. A pin is the hash of the SubjectPublicKeyInfo's
        # bytes whatever the algorithm, and no verified chain holds a key OpenSSL cannot use.
        assume(False)
        raise


def _check(der: bytes) -> None:
    reference = _reference_pin(der)
    try:
        ours: str | None = pin_of_der(der)
    except ValueError:
        ours = None
    # Agree, or refuse: never a pin where the strict parser has none, never another pin.
    assert ours is None or ours == reference, (ours, reference)
    try:
        walked = spki_der_of(der)
    except ValueError:
        return
    if reference is not None:
        cert = x509.load_der_x509_certificate(der)
        assert walked == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@given(re_encoded())
@settings(deadline=None)
def test_re_encoded_certificates_agree_with_cryptography_or_are_refused(der: bytes) -> None:
    _check(der)


@given(overwritten())
@settings(deadline=None)
def test_overwritten_bytes_agree_with_cryptography_or_are_refused(der: bytes) -> None:
    _check(der)


@given(st.binary(max_size=400))
@settings(deadline=None)
def test_arbitrary_bytes_agree_with_cryptography_or_are_refused(der: bytes) -> None:
    _check(der)


@pytest.mark.parametrize("der", CERTS, ids=["root", "intermediate", "leaf", "rsa", "p384", "ed"])
def test_real_certificates_take_the_fast_path(der: bytes) -> None:
    assert pin_of_der(der) == _reference_pin(der)
    assert spki_der_of(der)
