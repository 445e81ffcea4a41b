"""DSSE envelopes: PAE, signing, verification rules, hostile input (pure code)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import pinsdk
from pinsdk._core.envelope import MAX_PINS_PER_DOMAIN, PAYLOAD_TYPE, pae, parse_envelope
from pinsdk._core.keys import KeySet

from .signing import ed25519_key, p256_key, payload, public_pem

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
DOMAINS = [{"host": "api.example.com", "pins": [A, B]}]


def test_pae_matches_the_dsse_test_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae(PAYLOAD_TYPE, b"") == b"DSSEv1 34 application/vnd.pinsdk.pinset+json 0 "


@pytest.mark.parametrize("make_key", [ed25519_key, p256_key], ids=["ed25519", "p256"])
def test_sign_and_verify_roundtrip(make_key: Any) -> None:
    key = make_key()
    data = pinsdk.sign_envelope(payload(3, DOMAINS), key)
    envelope = json.loads(data)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert envelope["signatures"][0]["keyid"] == pinsdk.keyid_of(key.public_key())
    assert envelope["payload"].endswith("=") or len(envelope["payload"]) % 4 == 0
    verified = pinsdk.verify_envelope(data, [public_pem(key)])
    assert verified["version"] == 3
    assert verified.version == 3
    assert verified.policy.version == 3
    assert verified.policy.pins_for("api.example.com") == {A, B}
    assert verified.signed_by == {pinsdk.keyid_of(key.public_key())}


def _third_party_envelope(
    payload_bytes: bytes, key: ec.EllipticCurvePrivateKey, *, raw_sig: bool, keyid: str | None
) -> bytes:
    """Written from the spec alone: PAE, ECDSA, URL-safe unpadded base64, optional keyid."""
    message = b"DSSEv1 %d %s %d %s" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE.encode(),
        len(payload_bytes),
        payload_bytes,
    )
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    if raw_sig:
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = der
    entry: dict[str, str] = {"sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")}
    if keyid is not None:
        entry["keyid"] = keyid
    return json.dumps(
        {
            "signatures": [entry],
            "payload": base64.urlsafe_b64encode(payload_bytes).decode().rstrip("="),
            "payloadType": PAYLOAD_TYPE,
        }
    ).encode()


@pytest.mark.parametrize("raw_sig", [True, False], ids=["raw-r||s", "der"])
@pytest.mark.parametrize("keyid", [None, "", "given"])
def test_envelope_from_independent_code_verifies(raw_sig: bool, keyid: str | None) -> None:
    key = p256_key()
    body = json.dumps(payload(5, DOMAINS, **{"x-future-field": {"x": 1}}), indent=1).encode()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    real_id = hashlib.sha256(spki).hexdigest()
    data = _third_party_envelope(
        body, key, raw_sig=raw_sig, keyid=real_id if keyid == "given" else keyid
    )
    other = p256_key()
    verified = pinsdk.verify_envelope(data, [public_pem(other), key.public_key()])
    assert verified.version == 5
    assert verified.payload == body
    assert verified.signed_by == {real_id}


def test_threshold_counts_distinct_trusted_keys() -> None:
    k1, k2, k3 = ed25519_key(), p256_key(), ed25519_key()
    trusted = [public_pem(k) for k in (k1, k2, k3)]
    two = pinsdk.sign_envelope(payload(1, DOMAINS), [k1, k2])
    assert pinsdk.verify_envelope(two, trusted, threshold=2).signed_by.__len__() == 2
    with pytest.raises(pinsdk.SignatureError, match="signed by 2 of the current trusted keys; 3"):
        pinsdk.verify_envelope(two, trusted, threshold=3)
    # The same key signing twice still counts once.
    env = json.loads(pinsdk.sign_envelope(payload(1, DOMAINS), [k1]))
    env["signatures"] = env["signatures"] * 2 + [{"sig": env["signatures"][0]["sig"]}]
    with pytest.raises(pinsdk.SignatureError, match="signed by 1 of"):
        pinsdk.verify_envelope(json.dumps(env), trusted, threshold=2)


def test_forged_unknown_and_mislabelled_signatures_are_ignored() -> None:
    good, stranger = ed25519_key(), ed25519_key()
    forged = pinsdk.sign_envelope(payload(1, DOMAINS), stranger)
    with pytest.raises(pinsdk.SignatureError, match="signed by 0"):
        pinsdk.verify_envelope(forged, [public_pem(good)])
    # A valid signature whose keyid names another trusted key is not tried elsewhere.
    env = json.loads(pinsdk.sign_envelope(payload(1, DOMAINS), good))
    other = p256_key()
    env["signatures"][0]["keyid"] = pinsdk.keyid_of(other.public_key())
    with pytest.raises(pinsdk.SignatureError):
        pinsdk.verify_envelope(json.dumps(env), [public_pem(good), public_pem(other)])
    # Tampered payload: the signature no longer covers it.
    env = json.loads(pinsdk.sign_envelope(payload(1, DOMAINS), good))
    env["payload"] = base64.b64encode(json.dumps(payload(9, DOMAINS)).encode()).decode()
    with pytest.raises(pinsdk.SignatureError):
        pinsdk.verify_envelope(json.dumps(env), [public_pem(good)])


def test_algorithm_comes_from_the_trusted_key() -> None:
    """An Ed25519 signature presented for a trusted P-256 key (same keyid) never verifies."""
    ed, p = ed25519_key(), p256_key()
    env = json.loads(pinsdk.sign_envelope(payload(1, DOMAINS), ed))
    env["signatures"][0]["keyid"] = pinsdk.keyid_of(p.public_key())
    with pytest.raises(pinsdk.SignatureError):
        pinsdk.verify_envelope(json.dumps(env), [public_pem(p)])


def _signed(key: Any, doc: Any) -> bytes:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, body))
    return json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({**payload(1), "spec_version": 2}, "spec_version 2 is not supported"),
        ({**payload(1), "spec_version": "2.0"}, "spec_version '2.0' is not supported"),
        ({k: v for k, v in payload(1).items() if k != "expires"}, "missing 'expires'"),
        ({**payload(1), "version": 0}, "version must be an integer >= 1"),
        ({**payload(1), "version": "7"}, "version must be an integer >= 1"),
        ({**payload(1), "version": True}, "version must be an integer >= 1"),
        ({**payload(1), "issued_at": "yesterday"}, "RFC 3339"),
        ({**payload(1), "domains": [{"host": "a.com", "pins": ["md5/x"]}]}, "'md5/x'"),
        ({**payload(1), "domains": [{"host": "example.*", "pins": [A, B]}]}, "'example.*'"),
        ({**payload(1), "refresh_interval": -5}, "refresh_interval must be a positive"),
        ({**payload(1), "keys": {"trusted": "pem"}}, "'keys' must be"),
        ([1, 2], "payload must be a JSON object"),
        (b'{"version": 1, "version": 2}', "duplicate JSON key 'version'"),
        (b'{"version": ' + b"9" * 5000 + b"}", "too large"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"version": NaN}', "NaN is not allowed"),
        (b'{"version": 1e999}', "out of range"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{nope", "not valid JSON"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(doc: Any, reason: str) -> None:
    key = ed25519_key()
    with pytest.raises(pinsdk.EnvelopeFormatError) as info:
        pinsdk.verify_envelope(_signed(key, doc), [key.public_key()])
    assert reason in info.value.reason
    assert isinstance(info.value, pinsdk.UpdateRejectedError)
    assert isinstance(info.value, pinsdk.PinningError)


def test_spec_version_minor_and_extension_fields_are_accepted() -> None:
    key = ed25519_key()
    doc = {**payload(2, DOMAINS), "spec_version": "1.4", "x-added-later": [1, 2]}
    verified = pinsdk.verify_envelope(_signed(key, doc), [key.public_key()])
    assert verified["x-added-later"] == [1, 2]
    unknown = {**payload(2, DOMAINS), "spec_version": "1.4", "added_later": [1, 2]}
    with pytest.raises(pinsdk.EnvelopeFormatError, match="unknown key 'added_later'"):
        pinsdk.verify_envelope(_signed(key, unknown), [key.public_key()])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[]", "envelope must be a JSON object"),
        (
            b'{"payloadType": "text/plain", "payload": "", "signatures": []}',
            "payloadType is 'text/plain'",
        ),
        (
            json.dumps(
                {"payloadType": PAYLOAD_TYPE, "payload": "%%%", "signatures": [{}]}
            ).encode(),
            "payload is not valid base64",
        ),
        (
            json.dumps({"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": []}).encode(),
            "non-empty list",
        ),
        (
            json.dumps(
                {"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": [{"sig": 5}]}
            ).encode(),
            "sig must be a base64 string",
        ),
        (
            json.dumps(
                {"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": [{"sig": ""}] * 17}
            ).encode(),
            "at most 16",
        ),
    ],
)
def test_bad_envelopes_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(pinsdk.EnvelopeFormatError) as info:
        parse_envelope(data)
    assert reason in info.value.reason


def test_size_cap() -> None:
    key = ed25519_key()
    data = pinsdk.sign_envelope(payload(1, DOMAINS), key)
    with pytest.raises(pinsdk.EnvelopeFormatError, match="the limit is 100"):
        pinsdk.verify_envelope(data, [key.public_key()], max_size=100)


def test_expiry_and_future_issue_with_leeway() -> None:
    key = ed25519_key()
    trusted = [key.public_key()]
    expired = pinsdk.sign_envelope(payload(1, expires_in=-3600, issued_ago=7200), key)
    with pytest.raises(pinsdk.ExpiredDocumentError, match="expired at"):
        pinsdk.verify_envelope(expired, trusted)
    assert pinsdk.verify_envelope(expired, trusted, check_expiry=False).version == 1
    slightly = pinsdk.sign_envelope(payload(1, expires_in=-30, issued_ago=7200), key)
    assert pinsdk.verify_envelope(slightly, trusted, clock_leeway=60).version == 1
    with pytest.raises(pinsdk.ExpiredDocumentError):
        pinsdk.verify_envelope(slightly, trusted, clock_leeway=0)
    future = pinsdk.sign_envelope(payload(1, issued_ago=-86400, expires_in=2 * 86400), key)
    with pytest.raises(pinsdk.ExpiredDocumentError, match="issued in the future"):
        pinsdk.verify_envelope(future, trusted)


def test_key_rotation_needs_old_and_new_thresholds() -> None:
    old, new1, new2 = ed25519_key(), p256_key(), ed25519_key()
    rotate = payload(
        2, DOMAINS, keys={"trusted": [public_pem(new1), public_pem(new2)], "threshold": 2}
    )
    trusted = [old.public_key()]
    with pytest.raises(pinsdk.SignatureError, match="of the new trusted keys; 2 required"):
        pinsdk.verify_envelope(pinsdk.sign_envelope(rotate, [old, new1]), trusted)
    with pytest.raises(pinsdk.SignatureError, match="of the current trusted keys"):
        pinsdk.verify_envelope(pinsdk.sign_envelope(rotate, [new1, new2]), trusted)
    verified = pinsdk.verify_envelope(pinsdk.sign_envelope(rotate, [old, new1, new2]), trusted)
    assert verified.rotated_keys == KeySet.build([new1.public_key(), new2.public_key()], 2)


def test_bad_key_configuration() -> None:
    with pytest.raises(pinsdk.PinConfigError, match="threshold 2 is more than the 1 distinct"):
        KeySet.build([ed25519_key().public_key()] * 2, 2)
    with pytest.raises(pinsdk.PinConfigError, match="curve secp384r1 is not supported"):
        KeySet.build([ec.generate_private_key(ec.SECP384R1()).public_key()], 1)
    with pytest.raises(pinsdk.PinConfigError, match="not a PEM public key"):
        KeySet.build(["garbage"], 1)
    with pytest.raises(pinsdk.PinConfigError, match="threshold must be a positive integer"):
        KeySet.build([ed25519_key().public_key()], 0)


@pytest.mark.parametrize("canonical", [True, False], ids=["bulk-path", "general-path"])
def test_pin_lists_longer_than_the_limit_are_rejected(canonical: bool) -> None:
    key = ed25519_key()
    pin = DOMAINS[0]["pins"][0]
    host = "api.example.com" if canonical else "API.Example.com"
    pinsdk.PinPolicy([pinsdk.DomainPins("warm.example", [pin])])  # the pin is known
    ok = [{"host": host, "pins": [pin] * MAX_PINS_PER_DOMAIN}]
    assert pinsdk.verify_envelope(_signed(key, payload(1, ok)), [key.public_key()])
    long = [{"host": host, "pins": [pin] * (MAX_PINS_PER_DOMAIN + 1)}]
    with pytest.raises(pinsdk.EnvelopeFormatError, match="has 65 pins; at most 64"):
        pinsdk.verify_envelope(_signed(key, payload(1, long)), [key.public_key()])
