"""The pure pin check against real certificate chains."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinsdk import DomainPins, PinPolicy
from pinsdk._core.check import describe_failure, evaluate
from pinsdk._core.pins import ChainPinCache

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"other key").digest()).decode()


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def chain(api_cert: trustme.LeafCert, ca: trustme.CA) -> list[bytes]:
    return [der(p.bytes()) for p in api_cert.cert_chain_pems] + [der(ca.cert_pem.bytes())]


def one(pin: str, mode: str = "enforce", **kw: object) -> PinPolicy:
    return PinPolicy([DomainPins("api.pinsdk.test", [pin, BACKUP], mode=mode)], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["leaf", "intermediate", "root"])
def test_any_chain_position_passes(chain: list[bytes], pins: dict[str, str], which: str) -> None:
    assert evaluate(one(pins[which]), "api.pinsdk.test", chain) is None
    assert evaluate(one(pins[which]), "API.pinsdk.TEST.", chain) is None


def test_mismatch_enforced_and_reported(chain: list[bytes]) -> None:
    verdict = evaluate(one(BACKUP), "api.pinsdk.test", chain)
    assert verdict is not None
    assert verdict.enforced
    assert len(verdict.served_pins) == 3
    report = evaluate(one(BACKUP, mode="report"), "api.pinsdk.test", chain)
    assert report is not None
    assert not report.enforced
    text = describe_failure(verdict, chain)
    assert text.count(" : ") == 3
    assert BACKUP in text


def test_deny_is_enforced_even_in_report_mode_and_unpinned(
    chain: list[bytes], pins: dict[str, str]
) -> None:
    denied = evaluate(
        one(pins["leaf"], mode="report", deny=[pins["root"]]), "api.pinsdk.test", chain
    )
    assert denied is not None
    assert denied.enforced
    assert denied.denied_pins == (pins["root"],)
    unpinned = evaluate(PinPolicy(deny=[pins["leaf"]]), "other.test", chain)
    assert unpinned is not None
    assert unpinned.enforced


def test_empty_chain_fails_when_anything_is_checked(pins: dict[str, str]) -> None:
    for chain in ([], None):
        verdict = evaluate(one(pins["leaf"]), "api.pinsdk.test", chain)
        assert verdict is not None
        assert verdict.enforced
        assert "no verified chain" in verdict.reason
    assert evaluate(one(pins["leaf"]), "unpinned.test", []) is None


def test_expired_domain_is_not_enforced(chain: list[bytes]) -> None:
    policy = PinPolicy(
        [DomainPins("api.pinsdk.test", [BACKUP, OTHER], expires="2020-01-01T00:00:00Z")]
    )
    assert evaluate(policy, "api.pinsdk.test", chain) is None
    assert (
        evaluate(policy, "api.pinsdk.test", chain, now=time.mktime((2019, 1, 1, 0, 0, 0, 0, 0, 0)))
        is not None
    )


def test_cache_makes_repeat_checks_cheap(chain: list[bytes], pins: dict[str, str]) -> None:
    cache = ChainPinCache()
    policy = one(pins["root"])
    assert evaluate(policy, "api.pinsdk.test", chain, cache=cache) is None
    assert len(cache) == 3
    assert evaluate(policy, "api.pinsdk.test", chain, cache=cache) is None
    assert len(cache) == 3
