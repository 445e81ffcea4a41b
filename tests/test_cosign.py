"""Offline co-signing: each key holder adds a signature; thresholds count distinct keys."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

import pinsdk
from pinsdk._cli import main
from pinsdk._core.cosign import add_signature
from pinsdk._core.errors import PinConfigError
from pinsdk._core.keys import TrustedKey, load_private_key

from .signing import ed25519_key, p256_key, payload


def test_duplicate_signatures_of_one_key_do_not_meet_a_threshold_of_two() -> None:
    """GHSA-pwqf-9h7j-7mv8: the same key's signature twice (with its keyid, without it,
    and a second ECDSA signature, which differs byte for byte) counts once."""
    k1, k2 = p256_key(), ed25519_key()
    signed = json.loads(pinsdk.sign_envelope(payload(3), [k1, k1]))
    first = signed["signatures"][0]
    assert first["sig"] != signed["signatures"][1]["sig"]  # ECDSA: two different signatures
    signed["signatures"].append({"sig": first["sig"]})  # and once more without a keyid
    data = json.dumps(signed).encode()
    with pytest.raises(pinsdk.SignatureError, match="signed by 1 of the current trusted keys; 2"):
        pinsdk.verify_envelope(data, [k1.public_key(), k2.public_key()], threshold=2)
    assert pinsdk.verify_envelope(data, [k1.public_key(), k2.public_key()]).version == 3


def test_add_signature_keeps_the_payload_and_adds_nothing_twice() -> None:
    k1, k2 = ed25519_key(), p256_key()
    one = pinsdk.sign_envelope(payload(5), k1)
    with pytest.raises(pinsdk.SignatureError):
        pinsdk.verify_envelope(one, [k1.public_key(), k2.public_key()], threshold=2)
    result = add_signature(one, load_private_key(k2))
    assert result.added
    assert result.signatures == 2
    assert json.loads(result.envelope)["payload"] == json.loads(one)["payload"]
    verified = pinsdk.verify_envelope(
        result.envelope, [k1.public_key(), k2.public_key()], threshold=2
    )
    assert verified.signed_by == {
        pinsdk.keyid_of(k1.public_key()),
        pinsdk.keyid_of(k2.public_key()),
    }
    again = add_signature(result.envelope, load_private_key(k2))
    assert not again.added
    assert again.envelope == result.envelope


def test_add_signature_refuses_what_clients_refuse() -> None:
    key = ed25519_key()
    doc = json.loads(pinsdk.sign_envelope(payload(1), key))
    doc["payloadType"] = "text/plain"
    with pytest.raises(PinConfigError, match="refusing to co-sign: payloadType"):
        add_signature(json.dumps(doc).encode(), load_private_key(key))
    bad = json.loads(pinsdk.sign_envelope(payload(1), key))
    bad["payload"] = base64.b64encode(b'{"version": 1}').decode()
    with pytest.raises(PinConfigError, match="refusing to co-sign"):
        add_signature(json.dumps(bad).encode(), load_private_key(key))


@pytest.fixture
def ceremony(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    a = "sha256/" + base64.b64encode(b"a" * 32).decode()
    b = "sha256/" + base64.b64encode(b"b" * 32).decode()
    Path("policy.json").write_text(
        json.dumps({"domains": [{"host": "api.example.com", "pins": [a, b]}]})
    )
    for name in ("alice", "bob", "carol"):
        assert main(["keygen", "--out", name]) == 0
    return tmp_path


def test_signing_ceremony_on_the_command_line(
    ceremony: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trusted = ["--trusted-key", "alice.pub", "--trusted-key", "bob.pub"]
    trusted += ["--trusted-key", "carol.pub", "--threshold", "2"]
    assert main(["sign", "policy.json", "--key", "alice", "--version", "9", "--expires", "30d",
                 "--out", "doc.json"]) == 0  # fmt: skip
    os.chmod("doc.json", 0o640)
    before = json.loads(Path("doc.json").read_text())
    capsys.readouterr()
    assert main(["verify", "doc.json", *trusted]) == 1
    out = capsys.readouterr().out
    assert "REJECTED: signed by 1 of the current trusted keys; 2 required" in out
    assert "signed by 1 of 3 trusted keys (threshold 2)" in out
    keyid = {
        n: TrustedKey.load(Path(f"{n}.pub").read_bytes()).keyid for n in ("alice", "bob", "carol")
    }
    assert f"signed:  {keyid['alice']}" in out
    assert f"missing: {keyid['bob']}" in out

    # Bob, on his own machine: in place, atomically, mode kept.
    assert main(["cosign", "doc.json", "--key", "bob"]) == 0
    assert "added the signature of key" in capsys.readouterr().err
    after = json.loads(Path("doc.json").read_text())
    assert after["payload"] == before["payload"]
    assert len(after["signatures"]) == 2
    assert stat.S_IMODE(os.stat("doc.json").st_mode) == 0o640
    assert not [p for p in os.listdir(".") if p.startswith(".pinsdk-")]
    assert main(["verify", "doc.json", *trusted]) == 0
    out = capsys.readouterr().out
    assert "signed by 2 of 3 trusted keys (threshold 2)" in out
    assert f"missing: {keyid['carol']}" in out

    # Bob again: nothing added, file untouched.
    text = Path("doc.json").read_bytes()
    assert main(["cosign", "doc.json", "--key", "bob"]) == 0
    assert "has signed 'doc.json' already: nothing added" in capsys.readouterr().err
    assert Path("doc.json").read_bytes() == text

    # Carol writes elsewhere; the input stays as it was.
    assert main(["cosign", "doc.json", "--key", "carol", "--out", "final.json"]) == 0
    assert Path("doc.json").read_bytes() == text
    assert len(json.loads(Path("final.json").read_text())["signatures"]) == 3


def test_cosign_input_errors(ceremony: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cosign", "policy.json", "--key", "alice"]) == 2
    assert "'policy.json' is a policy, not a signed document" in capsys.readouterr().err
    Path("junk.json").write_text('{"payloadType": "text/plain"}')
    assert main(["cosign", "junk.json", "--key", "alice"]) == 2
    assert "refusing to co-sign: payloadType is 'text/plain'" in capsys.readouterr().err
    assert main(["cosign", "missing.json", "--key", "alice"]) == 2
    assert "cannot read document 'missing.json'" in capsys.readouterr().err
    assert main(["cosign", "policy.json", "--key", "alice.pub"]) == 2
    assert "'alice.pub' is a PEM public key, not a private key" in capsys.readouterr().err
