"""The worked example in docs/update-format.md is real and reproducible."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._core.envelope import PAYLOAD_TYPE, pae

DOC = Path(__file__).parent.parent / "docs" / "update-format.md"


def test_worked_example_verifies_and_is_reproducible() -> None:
    text = DOC.read_text()
    envelope = re.search(r"<!-- worked-example-envelope -->\n```json\n(.*?)\n```", text, re.S)
    assert envelope is not None
    pem = re.search(r"-----BEGIN PUBLIC KEY-----\n.*?\n-----END PUBLIC KEY-----", text, re.S)
    assert pem is not None
    data = envelope.group(1).encode()
    verified = pinsdk.verify_envelope(data, [pem.group(0)], now=1_800_000_000)
    assert verified.version == 1
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    body = base64.b64decode(json.loads(data)["payload"])
    assert body.decode() in text
    signature = base64.b64encode(key.sign(pae(PAYLOAD_TYPE, body))).decode()
    assert signature in text
    assert json.loads(data)["signatures"][0]["keyid"] == pinsdk.keyid_of(key.public_key())
    assert json.loads(pinsdk.sign_envelope(json.loads(body), key)) == json.loads(data)
