"""Update trust rules: rollback, equivocation, rotation, cache replay (pure code)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

import pinsdk
from pinsdk._core.keys import KeySet
from pinsdk._core.trust import TrustState, UpdateStatus, accept, restore, to_cache

from .signing import ed25519_key, payload, public_pem

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
C = "sha256/" + base64.b64encode(hashlib.sha256(b"c").digest()).decode()


def domains(*pins: str) -> list[dict[str, object]]:
    return [{"host": "api.example.com", "pins": list(pins)}]


@pytest.fixture
def key() -> object:
    return ed25519_key()


@pytest.fixture
def state(key: object) -> TrustState:
    return TrustState(keys=KeySet.build([key.public_key()], 1))  # type: ignore[attr-defined]


def test_versions_only_go_up(key: object, state: TrustState) -> None:
    v2 = pinsdk.sign_envelope(payload(2, domains(A, B)), key)  # type: ignore[arg-type]
    first = accept(state, v2)
    assert first.status is UpdateStatus.UPDATED
    assert first.state.version == 2
    v1 = pinsdk.sign_envelope(payload(1, domains(C, B)), key)  # type: ignore[arg-type]
    rollback = accept(first.state, v1)
    assert rollback.status is UpdateStatus.REJECTED
    assert "older than version 2" in rollback.reason
    assert rollback.state is first.state
    same = accept(first.state, v2)
    assert same.status is UpdateStatus.NOT_MODIFIED
    # Re-signing the same payload bytes is still "not modified".
    resigned = json.loads(v2)
    resigned["signatures"][0]["keyid"] = ""
    assert accept(first.state, json.dumps(resigned).encode()).status is UpdateStatus.NOT_MODIFIED
    other = pinsdk.sign_envelope(payload(2, domains(C, B)), key)  # type: ignore[arg-type]
    equivocation = accept(first.state, other)
    assert equivocation.status is UpdateStatus.REJECTED
    assert "equivocation" in equivocation.reason
    assert equivocation.state is first.state


def test_rejected_input_never_changes_the_state(key: object, state: TrustState) -> None:
    good = accept(state, pinsdk.sign_envelope(payload(3, domains(A, B)), key)).state  # type: ignore[arg-type]
    for bad in (
        b"",
        b"{}",
        b"garbage",
        pinsdk.sign_envelope(payload(9, domains(A)), ed25519_key()),
    ):
        decision = accept(good, bad)
        assert decision.status is UpdateStatus.REJECTED
        assert decision.state is good
        assert decision.state.document is not None
        assert decision.state.document.policy.pins_for("api.example.com") == {A, B}


def test_rotation_replaces_keys_and_is_replayed_from_cache(key: object, state: TrustState) -> None:
    new = ed25519_key()
    rotation = pinsdk.sign_envelope(
        payload(2, domains(A, B), keys={"trusted": [public_pem(new)], "threshold": 1}),
        [key, new],  # type: ignore[list-item]
    )
    rotated = accept(state, rotation)
    assert rotated.status is UpdateStatus.UPDATED
    assert "new key set" in rotated.reason
    old_signed = pinsdk.sign_envelope(payload(3, domains(A, C)), key)  # type: ignore[arg-type]
    assert accept(rotated.state, old_signed).status is UpdateStatus.REJECTED
    v3 = accept(rotated.state, pinsdk.sign_envelope(payload(3, domains(A, C)), new))
    assert v3.status is UpdateStatus.UPDATED
    cached = json.loads(json.dumps(to_cache(v3.state)))
    again = restore(state.keys, cached)
    assert again.version == 3
    assert again.keys == v3.state.keys
    # A cache that drops the rotation cannot be replayed from the app's keys.
    cached["rotations"] = []
    with pytest.raises(pinsdk.UpdateRejectedError, match="does not verify"):
        restore(state.keys, cached)


def test_restore_keeps_an_expired_document_as_the_floor(key: object, state: TrustState) -> None:
    old = pinsdk.sign_envelope(payload(4, domains(A, B), expires_in=-10, issued_ago=100), key)  # type: ignore[arg-type]
    st = accept(state, old, check_expiry=False).state
    restored = restore(state.keys, to_cache(st))
    assert restored.version == 4
    assert accept(restored, pinsdk.sign_envelope(payload(3, domains(A, B)), key)).status is (  # type: ignore[arg-type]
        UpdateStatus.REJECTED
    )


@pytest.mark.parametrize(
    "cached",
    [
        None,
        [],
        {"pinsdk_cache": 99},
        {"pinsdk_cache": 1, "document": 5},
        {"pinsdk_cache": 1, "document": "%%"},
    ],
)
def test_restore_refuses_malformed_cache(state: TrustState, cached: object) -> None:
    with pytest.raises(pinsdk.UpdateRejectedError):
        restore(state.keys, cached)
