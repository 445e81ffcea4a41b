"""``TrustedPins``, the one door to trust, driven directly: bytes and JSON in, decisions and
state out. No network, no event loop, and a fixed clock (nothing patches ``time.time``)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._core.keys import KeySet
from pinsdk._core.timeutil import format_datetime
from pinsdk._core.trusted import CacheStatus, TrustedPins, _State

from .signing import ed25519_key, public_pem

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
C = "sha256/" + base64.b64encode(hashlib.sha256(b"c").digest()).decode()
HOST = "api.example.com"
T0 = 1_900_000_000.0  # "now" for these tests (2030-03-17)
DAY = 86400.0


class Clock:
    """A clock the test moves by hand; counts its readings."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def signed(
    version: int,
    signers: Any,
    *pins: str,
    issued: float = T0 - 60,
    expires: float = T0 + DAY,
    **extra: Any,
) -> bytes:
    when = {
        "issued_at": format_datetime(datetime.fromtimestamp(issued, timezone.utc)),
        "expires": format_datetime(datetime.fromtimestamp(expires, timezone.utc)),
    }
    body = {
        "spec_version": 1,
        "version": version,
        **when,
        "domains": [{"host": HOST, "pins": list(pins or (A, B))}],
        **extra,
    }
    return pinsdk.sign_envelope(body, signers)


@pytest.fixture
def key() -> Any:
    return ed25519_key()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def trusted(key: Any, clock: Clock, bootstrap: Any = None, **kw: Any) -> TrustedPins:
    return TrustedPins(KeySet.build([key.public_key()], 1), bootstrap, clock=clock, **kw)


def snapshot(t: TrustedPins) -> tuple[Any, ...]:
    """Everything observable about a trusted set (the state value itself, by identity)."""
    return (t._state, t.current, t.document, t.floor, t.facts(), t.to_cache())


def test_versions_only_go_up(key: Any, clock: Clock) -> None:
    t = trusted(key, clock)
    v2 = signed(2, key)
    assert t.update(v2).status is UpdateStatus.UPDATED
    assert (t.floor, t.current.version) == (2, 2)
    rollback = t.update(signed(1, key, C, B))
    assert rollback.status is UpdateStatus.REJECTED
    assert rollback.reason == "version 1 is older than version 2 in force"
    assert rollback.version == 2
    assert t.update(v2).status is UpdateStatus.NOT_MODIFIED
    # Re-signing the same payload bytes (another signature) is still "not modified".
    resigned = json.loads(v2)
    resigned["signatures"][0]["keyid"] = ""
    assert t.update(json.dumps(resigned).encode()).status is UpdateStatus.NOT_MODIFIED
    equivocation = t.update(signed(2, key, C, B))
    assert equivocation.status is UpdateStatus.REJECTED
    assert "equivocation" in equivocation.reason
    assert t.current.pins_for(HOST) == {A, B}


def test_a_rejected_input_leaves_everything_as_it_was(key: Any, clock: Clock) -> None:
    t = trusted(key, clock, max_size=64 * 1024)
    assert t.update(signed(3, key)).status is UpdateStatus.UPDATED
    before = snapshot(t)
    state = t._state
    bad = {
        "empty": b"",
        "not an envelope": b"{}",
        "not JSON": b"garbage",
        "another key": signed(9, ed25519_key()),
        "rollback": signed(2, key),
        "equivocation": signed(3, key, A, C),
        "expired": signed(4, key, issued=T0 - 2 * DAY, expires=T0 - DAY),
        "issued in the future": signed(4, key, issued=T0 + DAY, expires=T0 + 2 * DAY),
        "too large": b" " * (64 * 1024 + 1),
        "unsigned rotation": signed(
            4, key, keys={"trusted": [public_pem(ed25519_key())], "threshold": 1}
        ),
    }
    for name, data in bad.items():
        decision = t.update(data)
        assert decision.status is UpdateStatus.REJECTED, name
        assert decision.version == 3, name
        assert t._state is state, name
        assert snapshot(t) == before, name


def test_expiry_keep_and_unpin_follow_the_injected_clock(key: Any) -> None:
    bootstrap = PinPolicy([DomainPins(HOST, [C, B])])
    doc = signed(5, key, expires=T0 + 100)
    keep_clock, unpin_clock = Clock(), Clock()
    keep = trusted(key, keep_clock, bootstrap)
    unpin = trusted(key, unpin_clock, bootstrap, on_expiry="unpin")
    for t in (keep, unpin):
        assert t.current is bootstrap
        assert t.update(doc).status is UpdateStatus.UPDATED
        assert t.current.pins_for(HOST) == {A, B}
        assert not t.facts().stale
    keep_clock.now = unpin_clock.now = T0 + 100  # the instant it expires
    assert keep.current.pins_for(HOST) == {A, B}  # kept: still pinned
    assert unpin.current is bootstrap  # the bootstrap again
    for t in (keep, unpin):
        facts = t.facts()
        assert facts.stale
        assert (facts.version, facts.floor) == (5, 5)
        assert facts.expires == datetime.fromtimestamp(T0 + 100, timezone.utc)
        # Expired or not, it holds the floor; a newer document ends the staleness.
        assert t.update(signed(4, key, expires=T0 + DAY)).status is UpdateStatus.REJECTED
        assert t.update(signed(6, key, C, A, expires=T0 + DAY)).status is UpdateStatus.UPDATED
        assert t.current.pins_for(HOST) == {C, A}
        assert not t.facts().stale


def test_expiry_and_issued_at_are_judged_with_the_leeway(key: Any, clock: Clock) -> None:
    t = trusted(key, clock, clock_leeway=60)
    late = signed(1, key, issued=T0 - DAY, expires=T0 - 59)
    assert t.update(late).status is UpdateStatus.UPDATED  # within the leeway
    gone = t.update(signed(2, key, issued=T0 - DAY, expires=T0 - 61))
    assert gone.status is UpdateStatus.REJECTED
    assert "expired at" in gone.reason
    future = t.update(signed(2, key, issued=T0 + 61, expires=T0 + DAY))
    assert future.status is UpdateStatus.REJECTED
    assert "issued in the future" in future.reason
    assert t.update(signed(2, key, issued=T0 + 59, expires=T0 + DAY)).status is (
        UpdateStatus.UPDATED
    )
    clock.now = T0 - 10 * DAY  # a clock far behind: "issued in the future" by its reading
    assert t.update(signed(3, key)).status is UpdateStatus.REJECTED


def test_the_clock_is_read_once_per_decision(key: Any, clock: Clock) -> None:
    """As tuf's reference_time: one reading judges both expires and issued_at."""
    t = trusted(key, clock)
    for data in (signed(1, key), b"garbage", signed(1, key)):
        clock.reads = 0
        t.update(data)
        assert clock.reads == 1
    clock.reads = 0
    t.facts()
    assert clock.reads == 1
    t.current  # noqa: B018 ("keep": the expiry does not matter, so the clock is not read)
    assert clock.reads == 1


@pytest.mark.parametrize("new_threshold", [1, 2])
def test_key_rotation_needs_both_thresholds(key: Any, clock: Clock, new_threshold: int) -> None:
    second = ed25519_key()
    old = TrustedPins(
        KeySet.build([key.public_key(), second.public_key()], 2), clock=clock
    )  # 2 of 2
    new = [ed25519_key() for _ in range(3)]
    rotation_keys = {"trusted": [public_pem(k) for k in new], "threshold": new_threshold}
    needed_new = new[:new_threshold]
    attempts = {
        "old threshold not met": [key, *needed_new],
        "new threshold not met": [key, second, *new[: new_threshold - 1]],
        "only the new keys": list(new),
    }
    for name, signers in attempts.items():
        if name == "new threshold not met" and new_threshold == 1:
            signers = [key, second]
        decision = old.update(signed(2, signers, keys=rotation_keys))
        assert decision.status is UpdateStatus.REJECTED, name
        assert "required" in decision.reason, name
    rotated = old.update(signed(2, [key, second, *needed_new], keys=rotation_keys))
    assert rotated.status is UpdateStatus.UPDATED, rotated.reason
    assert f"new key set (3 keys, threshold {new_threshold})" in rotated.reason
    facts = old.facts()
    assert facts.threshold == new_threshold
    assert len(facts.keyids) == 3
    # The old keys no longer sign anything; the new threshold does.
    assert old.update(signed(3, [key, second])).status is UpdateStatus.REJECTED
    if new_threshold == 2:
        assert old.update(signed(3, new[2])).status is UpdateStatus.REJECTED
    assert old.update(signed(3, new[1:])).status is UpdateStatus.UPDATED
    # The cache replays the rotation from the app's own keys.
    fresh = TrustedPins(KeySet.build([key.public_key(), second.public_key()], 2), clock=clock)
    cached = json.loads(json.dumps(old.to_cache()))
    assert fresh.load_cache(cached).status is CacheStatus.LOADED
    assert fresh.facts() == old.facts()
    # A cache that drops the rotation cannot be replayed from the app's keys.
    cached["rotations"] = []
    again = TrustedPins(KeySet.build([key.public_key(), second.public_key()], 2), clock=clock)
    outcome = again.load_cache(cached)
    assert outcome.status is CacheStatus.CORRUPT
    assert "does not verify" in outcome.reason


def cache_of(key: Any, clock: Clock, *documents: bytes) -> dict[str, Any]:
    t = trusted(key, clock)
    for d in documents:
        assert t.update(d).status is UpdateStatus.UPDATED
    content = t.to_cache({"etag": '"x"'})
    assert content is not None
    return json.loads(json.dumps(content))


def test_cache_precedence_over_bootstrap(key: Any, clock: Clock) -> None:
    policy = PinPolicy([DomainPins(HOST, [C, B])])
    v4 = cache_of(key, clock, signed(4, key, A, C))
    # A bootstrap policy has no version: any verified cached document wins.
    t = trusted(key, clock, policy)
    loaded = t.load_cache(v4)
    assert (loaded.status, loaded.version) == (CacheStatus.LOADED, 4)
    assert t.current.pins_for(HOST) == {A, C}
    # A bootstrap document wins over a cache that is not newer, and loses to one that is.
    for cached_version, status, in_force in [
        (2, CacheStatus.NOT_NEWER, 3),
        (3, CacheStatus.NOT_NEWER, 3),
        (4, CacheStatus.LOADED, 4),
    ]:
        t = trusted(key, clock, signed(3, key))
        outcome = t.load_cache(cache_of(key, clock, signed(cached_version, key, A, C)))
        assert outcome.status is status, cached_version
        assert t.current.version == t.floor == in_force
    # A cache holding no document is no reason to leave the bootstrap.
    empty = trusted(key, clock, policy)
    outcome = empty.load_cache(cache_of(key, clock))
    assert outcome.status is CacheStatus.NOT_NEWER
    assert "no document" in outcome.reason
    assert empty.current is policy


def test_an_expired_cached_document_still_holds_the_floor(key: Any, clock: Clock) -> None:
    cached = cache_of(key, clock, signed(4, key, expires=T0 + 10))
    clock.now = T0 + DAY  # restarted a day later
    t = trusted(key, clock, PinPolicy([DomainPins(HOST, [C, B])]), on_expiry="unpin")
    assert t.load_cache(cached).status is CacheStatus.LOADED
    assert t.floor == 4
    assert t.facts().stale
    assert t.current.pins_for(HOST) == {C, B}  # unpinned to the bootstrap
    assert t.update(signed(3, key, expires=T0 + 2 * DAY)).status is UpdateStatus.REJECTED


BAD_FLOORS: dict[str, object] = {
    "beyond any version": 2**64,
    "negative": -1,
    "zero": 0,
    "a string": "4",
    "a float": 4.0,
    "a boolean": True,
    "above its document": 1000,
    "below its document": 3,
}


@pytest.mark.parametrize("bad", list(BAD_FLOORS))
def test_a_planted_floor_makes_the_cache_corrupt(key: Any, clock: Clock, bad: str) -> None:
    cached = {**cache_of(key, clock, signed(4, key)), "floor": BAD_FLOORS[bad]}
    bootstrap = PinPolicy([DomainPins(HOST, [C, B])])
    t = trusted(key, clock, bootstrap)
    before = snapshot(t)
    outcome = t.load_cache(cached)
    assert outcome.status is CacheStatus.CORRUPT
    assert "floor" in outcome.reason
    assert snapshot(t) == before
    assert t.current is bootstrap
    assert t.update(signed(2, key)).status is UpdateStatus.UPDATED  # nothing locked out


def test_a_missing_floor_is_the_cached_documents_version(key: Any, clock: Clock) -> None:
    cached = cache_of(key, clock, signed(3, key))
    assert cached["floor"] == 3
    del cached["floor"]  # what an older pinsdk wrote
    t = trusted(key, clock)
    assert t.load_cache(cached).status is CacheStatus.LOADED
    assert t.floor == 3
    assert t.update(signed(2, key)).reason == "version 2 is older than version 3 in force"


@pytest.mark.parametrize(
    "cached",
    [
        [],
        "text",
        {"pinsdk_cache": 99},
        {"pinsdk_cache": 1, "document": 5},
        {"pinsdk_cache": 1, "document": "%%"},
        {"pinsdk_cache": 1, "rotations": "x"},
        {"pinsdk_cache": 1, "rotations": [5]},
        {"pinsdk_cache": 1, "document": base64.b64encode(b"{}").decode()},
        {"pinsdk_cache": 1, "document": None, "floor": 2},
    ],
)
def test_malformed_caches_change_nothing(key: Any, clock: Clock, cached: object) -> None:
    t = trusted(key, clock, signed(2, key))
    before = snapshot(t)
    assert t.load_cache(cached).status is CacheStatus.CORRUPT
    assert snapshot(t) == before
    assert t.cached_version(cached) is None


def test_the_cache_file_never_goes_down(key: Any, clock: Clock) -> None:
    """What another process wrote is kept when it is at least as new."""
    t = trusted(key, clock)
    assert t.to_cache(replacing=None) is not None  # nothing on disk: written
    t.update(signed(3, key))
    newer = cache_of(key, clock, signed(3, key), signed(5, key, A, C))
    assert t.cached_version(newer) == 5
    assert t.to_cache(replacing=newer) is None
    assert t.to_cache(replacing=cache_of(key, clock, signed(3, key))) is None  # as new
    older = cache_of(key, clock, signed(2, key))
    content = t.to_cache({"etag": '"e"'}, replacing=older)
    assert content is not None
    assert (content["floor"], content["etag"]) == (3, '"e"')
    assert t.to_cache(replacing={"pinsdk_cache": 1, "document": "%%"}) is not None  # corrupt


def test_bootstrap_documents(key: Any, clock: Clock) -> None:
    stale = signed(3, key, issued=T0 - 2 * DAY, expires=T0 - DAY)
    t = trusted(key, clock, stale)  # an expired bootstrap still holds the floor
    assert (t.floor, t.current.version, t.facts().stale) == (3, 3, True)
    assert t.bootstrap == PinPolicy()
    with pytest.raises(pinsdk.PinConfigError, match="bootstrap document does not verify"):
        trusted(key, clock, signed(1, ed25519_key()))
    with pytest.raises(pinsdk.PinConfigError, match="bootstrap must be a PinPolicy"):
        trusted(key, clock, "pins.json")
    with pytest.raises(pinsdk.PinConfigError, match="on_expiry must be"):
        trusted(key, clock, on_expiry="drop")
    with pytest.raises(pinsdk.PinConfigError, match="clock_leeway must be"):
        trusted(key, clock, clock_leeway=-1)


def test_trusted_values_cannot_be_built_from_outside(key: Any, clock: Clock) -> None:
    """Neither a trust state nor a VerifiedPayload has a public constructor, so no caller
    can make one that skipped verification; the trusted set takes signed bytes only."""
    t = trusted(key, clock)
    t.update(signed(1, key))
    payload = t.document
    assert isinstance(payload, pinsdk.VerifiedPayload)
    with pytest.raises(TypeError, match="no public constructor"):
        pinsdk.VerifiedPayload(b"{}", 9, None, None, None, PinPolicy(), None, frozenset())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no public constructor"):
        attrs.evolve(payload, version=99)
    with pytest.raises(TypeError, match="built by TrustedPins only"):
        _State(keys=t._state.keys)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="built by TrustedPins only"):
        attrs.evolve(t._state, floor=0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        t._state.floor = 0  # type: ignore[misc]
    assert payload["version"] == payload.version == 1  # still readable as before
