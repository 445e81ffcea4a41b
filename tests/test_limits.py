"""Document limits: one UpdateLimits read by the signer, the CLI and the verifier alike."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._cli import main
from pinsdk._core.envelope import PAYLOAD_TYPE, pae
from pinsdk._core.limits import TYPICAL_ENTRY_BYTES

from .signing import payload

KEY = ed25519.Ed25519PrivateKey.generate()


def _pin(seed: int) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(b"%d" % seed).digest()).decode()


def _unchecked_envelope(body: dict[str, Any]) -> bytes:
    """Signed as sign_envelope signs, but without its checks: what a careless signer makes."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    signature = base64.b64encode(KEY.sign(pae(PAYLOAD_TYPE, raw))).decode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(raw).decode(),
        "signatures": [{"keyid": pinsdk.keyid_of(KEY.public_key()), "sig": signature}],
    }
    return json.dumps(envelope, indent=2).encode() + b"\n"


def _outcome(call: Any) -> str:
    try:
        call()
    except (pinsdk.PinConfigError, pinsdk.UpdateRejectedError):
        return "refused"
    return "accepted"


def _domains(count: int, pins: int = 2) -> list[dict[str, Any]]:
    return [
        {"host": f"h{i}.example.com", "pins": [_pin(i * 7 + j) for j in range(pins)]}
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 3, 6, 8, 9])
@pytest.mark.parametrize("pins", [1, 2, 3])
@pytest.mark.parametrize("deny", [0, 1, 2])
@pytest.mark.parametrize("max_size", [1024, 1300, 1800, 5000])
def test_the_signer_refuses_exactly_what_the_verifier_refuses(
    count: int, pins: int, deny: int, max_size: int
) -> None:
    limits = pinsdk.UpdateLimits(
        max_domains=8, max_size=max_size, max_pins_per_domain=2, max_deny=1
    )
    body = payload(1, _domains(count, pins), deny=[_pin(-1 - i) for i in range(deny)])
    signed = _outcome(lambda: pinsdk.sign_envelope(body, KEY, limits=limits))
    envelope = _unchecked_envelope(body)
    verified = _outcome(lambda: pinsdk.verify_envelope(envelope, [KEY.public_key()], limits=limits))
    assert signed == verified


def test_defaults_agree_and_messages_name_the_setting() -> None:
    many = payload(1, _domains(pinsdk.UpdateLimits().max_domains + 1, 1))
    with pytest.raises(pinsdk.PinConfigError, match=r"max_domains: raise it"):
        pinsdk.sign_envelope(many, KEY)
    with pytest.raises(pinsdk.EnvelopeFormatError, match=r"max_domains: raise it"):
        pinsdk.verify_envelope(_unchecked_envelope(many), [KEY.public_key()])
    small = pinsdk.UpdateLimits(max_size=2048)
    big = payload(1, _domains(10))
    with pytest.raises(pinsdk.PinConfigError, match=r"max_size: raise it with DynamicPins"):
        pinsdk.sign_envelope(big, KEY, limits=small)
    with pytest.raises(pinsdk.EnvelopeFormatError, match=r"max_size: raise it with DynamicPins"):
        pinsdk.verify_envelope(_unchecked_envelope(big), [KEY.public_key()], limits=small)


def test_default_size_fits_the_default_domain_count_of_typical_entries() -> None:
    """The typical entry of the default's arithmetic (a 60-character host, four pins) is
    within TYPICAL_ENTRY_BYTES once signed: so max_domains of them fit in max_size."""
    limits = pinsdk.UpdateLimits()
    assert limits.max_size >= limits.max_domains * TYPICAL_ENTRY_BYTES
    entries = [
        {"host": f"{'x' * 40}-{i:09d}.example.com", "pins": [_pin(i * 4 + j) for j in range(4)]}
        for i in range(2000)
    ]
    assert all(len(e["host"]) == 62 for e in entries)
    signed = pinsdk.sign_envelope(payload(1, entries), KEY)
    assert len(signed) / len(entries) < TYPICAL_ENTRY_BYTES


def test_limits_are_validated() -> None:
    with pytest.raises(pinsdk.PinConfigError, match="max_domains must be an integer"):
        pinsdk.UpdateLimits(max_domains=-1)
    with pytest.raises(pinsdk.PinConfigError, match="max_size must be an integer of at least"):
        pinsdk.UpdateLimits(max_size=10)
    with pytest.raises(pinsdk.PinConfigError, match="limits must be an UpdateLimits"):
        pinsdk.sign_envelope(payload(1), KEY, limits={"max_domains": 3})  # type: ignore[arg-type]
    dyn = pinsdk.DynamicPins(
        "https://127.0.0.1/p.json",
        [KEY.public_key()],
        limits=pinsdk.UpdateLimits(max_domains=5),
        max_size=4096,
        auto_refresh=False,
    )
    assert dyn.limits == pinsdk.UpdateLimits(max_domains=5, max_size=4096)
    assert dyn.max_size == 4096
    default = pinsdk.DynamicPins("https://127.0.0.1/p.json", [KEY.public_key()])
    assert default.limits == pinsdk.UpdateLimits()


@pytest.mark.anyio
async def test_a_client_applies_its_limits_to_documents_and_bootstrap() -> None:
    limits = pinsdk.UpdateLimits(max_domains=2)
    doc = pinsdk.sign_envelope(payload(1, _domains(3)), KEY)  # fine under the defaults
    with pytest.raises(pinsdk.PinConfigError, match="3 domains; at most 2"):
        pinsdk.DynamicPins(
            "https://127.0.0.1/p.json", [KEY.public_key()], bootstrap=doc, limits=limits
        )
    dyn = pinsdk.DynamicPins(
        "https://127.0.0.1/p.json", [KEY.public_key()], limits=limits, auto_refresh=False
    )
    result = await dyn.apply_document(doc)
    assert result.status is pinsdk.UpdateStatus.REJECTED
    assert "max_domains" in result.reason


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.json").write_text(json.dumps({"domains": _domains(3)}))
    main(["keygen", "--out", "k"])
    return tmp_path


def test_cli_sign_and_verify_take_the_same_limits(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign = ["sign", "policy.json", "--key", "k", "--version", "1", "--expires", "1d"]
    assert main([*sign, "--max-domains", "2", "--out", "doc.json"]) == 2
    assert "3 domains; at most 2" in capsys.readouterr().err
    assert main([*sign, "--max-size", "1024", "--out", "doc.json"]) == 2
    assert "the limit is 1024" in capsys.readouterr().err
    assert main([*sign, "--max-size", "10", "--out", "doc.json"]) == 2
    assert "--max-size must be an integer of at least 1024" in capsys.readouterr().err
    assert main([*sign, "--out", "doc.json"]) == 0
    verify = ["verify", "doc.json", "--trusted-key", "k.pub"]
    assert main([*verify, "--max-domains", "2"]) == 1
    assert "REJECTED: 3 domains; at most 2" in capsys.readouterr().out
    assert main(verify) == 0
