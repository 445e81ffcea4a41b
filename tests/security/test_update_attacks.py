"""Row 7 of the attack matrix: attacks on the update channel, through a real HTTPS server.

Every rejected or failed update leaves the pins in force exactly as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

import pinsdk
from pinsdk import UpdateStatus
from pinsdk._core.envelope import PAYLOAD_TYPE, pae
from pinsdk._demo.loopback import LoopbackTLSServer, Reply

from ..signing import ed25519_key, payload, public_pem
from ..updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


@pytest.fixture
def signers() -> list[Any]:
    return [ed25519_key(), ed25519_key()]


def domains(pins: dict[str, str], which: str = "leaf") -> list[dict[str, Any]]:
    return [{"host": "127.0.0.1", "pins": [pins[which], BACKUP]}]


def raw_envelope(body: bytes, key: Any, *, ptype: str = PAYLOAD_TYPE) -> bytes:
    """Sign arbitrary payload bytes (for malformed payloads sign_envelope would not write)."""
    sig = key.sign(pae(ptype, body))
    return json.dumps(
        {
            "payloadType": ptype,
            "payload": base64.b64encode(body).decode(),
            "signatures": [
                {"keyid": pinsdk.keyid_of(key.public_key()), "sig": base64.b64encode(sig).decode()}
            ],
        }
    ).encode()


def attack(
    name: str, signers: list[Any], pins: dict[str, str]
) -> tuple[Reply | Callable[[], Reply], str]:
    """The reply the attacker serves, and words the rejection reason must contain."""
    key, other = signers
    good = payload(9, domains(pins, "root"))
    body = json.dumps(good).encode()
    ok_headers = [("Content-Type", "application/json")]
    if name == "forged signature":
        env = json.loads(pinsdk.sign_envelope(good, key))
        forged = other.sign(pae(PAYLOAD_TYPE, base64.b64decode(env["payload"])))
        env["signatures"][0]["sig"] = base64.b64encode(forged).decode()  # trusted keyid, bad sig
        return (200, ok_headers, json.dumps(env).encode()), "signed by 0"
    if name == "unknown key":
        return (200, ok_headers, pinsdk.sign_envelope(good, ed25519_key())), "signed by 0"
    if name == "below threshold":
        return (
            200,
            ok_headers,
            pinsdk.sign_envelope(good, key),
        ), "signed by 1 of the current trusted keys; 2"
    if name == "rollback":
        return (
            200,
            ok_headers,
            pinsdk.sign_envelope(payload(1, domains(pins)), signers),
        ), "older than version 5"
    if name == "equivocation":
        return (
            200,
            ok_headers,
            pinsdk.sign_envelope(payload(5, domains(pins, "root")), signers),
        ), "equivocation"
    if name == "expired":
        old = payload(9, domains(pins, "root"), expires_in=-3600, issued_ago=7200)
        return (200, ok_headers, pinsdk.sign_envelope(old, signers)), "expired at"
    if name == "far-future issued_at":
        future = payload(9, domains(pins, "root"), issued_ago=-30 * 86400, expires_in=60 * 86400)
        return (200, ok_headers, pinsdk.sign_envelope(future, signers)), "issued in the future"
    if name == "oversized":
        return (200, ok_headers, b" " * 300_000), "max_size is 262144 (raise DynamicPins(max_size"
    if name == "wrong content type":
        return (
            200,
            [("Content-Type", "text/html")],
            pinsdk.sign_envelope(good, signers),
        ), "Content-Type 'text/html'"
    if name == "wrong payloadType":
        envs = [
            json.loads(raw_envelope(body, k, ptype="application/vnd.in-toto+json")) for k in signers
        ]
        envs[0]["signatures"] += envs[1]["signatures"]
        return (
            200,
            ok_headers,
            json.dumps(envs[0]).encode(),
        ), "payloadType is 'application/vnd.in-toto+json'"
    if name in ("duplicate JSON keys", "huge integers", "deeply nested JSON"):
        bad = {
            "duplicate JSON keys": body[:-1] + b', "version": 99}',
            "huge integers": body.replace(b'"version": 9', b'"version": ' + b"9" * 5000),
            "deeply nested JSON": b'{"spec_version": 1, "x": '
            + b"[" * 50_000
            + b"]" * 50_000
            + b"}",
        }[name]
        envs = [json.loads(raw_envelope(bad, k)) for k in signers]
        envs[0]["signatures"] += envs[1]["signatures"]
        reason = {
            "duplicate JSON keys": "duplicate JSON key 'version'",
            "huge integers": "too large",
            "deeply nested JSON": "nested too deeply",
        }[name]
        return (200, ok_headers, json.dumps(envs[0]).encode()), reason
    raise AssertionError(name)


REJECTED = [
    "forged signature",
    "unknown key",
    "below threshold",
    "rollback",
    "equivocation",
    "expired",
    "far-future issued_at",
    "oversized",
    "wrong content type",
    "wrong payloadType",
    "duplicate JSON keys",
    "huge integers",
    "deeply nested JSON",
]


@pytest.fixture
def client_pins(
    updates: UpdateServer,
    signers: list[Any],
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> Iterator[pinsdk.DynamicPins]:
    dyn = pinsdk.DynamicPins(
        updates.url,
        [public_pem(k) for k in signers],
        threshold=2,
        auto_refresh=False,
        verify=device_trust(),
        timeout=0.5,
        max_size=262144,  # far below the default: oversized and endless bodies stay small
    )
    return dyn


@pytest.mark.parametrize("name", REJECTED)
async def test_row07_rejected_update_attacks(
    updates: UpdateServer,
    client_pins: pinsdk.DynamicPins,
    signers: list[Any],
    pins: dict[str, str],
    name: str,
) -> None:
    updates.publish(pinsdk.sign_envelope(payload(5, domains(pins)), signers))
    assert (await client_pins.refresh()).status is UpdateStatus.UPDATED
    before = client_pins.current
    reply, reason = attack(name, signers, pins)
    updates.reply = reply  # type: ignore[assignment]
    result = await client_pins.refresh()
    assert result.status is UpdateStatus.REJECTED, result
    assert reason in result.reason
    assert client_pins.current is before
    assert client_pins.state.version == 5


async def test_row07_endless_and_slowloris_bodies(
    updates: UpdateServer,
    client_pins: pinsdk.DynamicPins,
    signers: list[Any],
    pins: dict[str, str],
) -> None:
    stop = threading.Event()

    def endless() -> Iterator[bytes]:
        for _ in range(100_000):  # bounded; the client hangs up at max_size
            if stop.is_set():
                return
            yield b"[" * 4096

    def drip() -> Iterator[bytes]:
        for _ in range(10_000):  # one byte every 50 ms: every read on time, never finished
            if stop.wait(0.05):
                return
            yield b" "

    updates.reply = (200, [("Content-Type", "application/json")], endless())
    with anyio.fail_after(10):
        endless_result = await client_pins.refresh()
    updates.reply = (200, [("Content-Type", "application/json")], drip())
    with anyio.fail_after(10):
        slow_result = await client_pins.refresh()
    stop.set()
    assert endless_result.status is UpdateStatus.REJECTED
    assert "download aborted" in endless_result.reason
    assert slow_result.status is UpdateStatus.FAILED
    assert "did not finish within 1.5 s" in slow_result.reason
    assert client_pins.current == pinsdk.PinPolicy()


async def test_row07_redirect_to_another_host_is_not_followed(
    updates: UpdateServer,
    client_pins: pinsdk.DynamicPins,
    signers: list[Any],
    pins: dict[str, str],
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
) -> None:
    evil = serve(api_cert, http2=False)
    updates.reply = (302, [("Location", evil.url("127.0.0.1", "/pins.json"))], b"")
    result = await client_pins.refresh()
    assert result.status is UpdateStatus.FAILED
    assert "is not followed" in result.reason
    assert evil.requests == []


async def test_row07_cache_replaced_by_an_older_signed_document(
    updates: UpdateServer,
    signers: list[Any],
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A valid but older cache file put back (a restored backup, a local attacker): the file
    holds its own floor, so the client starts on that older but genuinely signed document (no
    worse than a deleted cache, which leaves the bootstrap), never on no pins or a forged one;
    the next fetch moves it forward and the older version cannot come back from the network."""
    cache = tmp_path / "pins.cache"

    def make() -> pinsdk.DynamicPins:
        return pinsdk.DynamicPins(
            updates.url,
            [public_pem(k) for k in signers],
            threshold=2,
            auto_refresh=False,
            verify=device_trust(),
            cache_path=cache,
        )

    v1 = pinsdk.sign_envelope(payload(1, domains(pins)), signers)
    v2 = pinsdk.sign_envelope(payload(2, domains(pins, "root")), signers)
    async with make() as first:
        updates.publish(v1)
        assert (await first.refresh()).status is UpdateStatus.UPDATED
        shutil.copy(cache, tmp_path / "old.cache")
        updates.publish(v2)
        assert (await first.refresh()).status is UpdateStatus.UPDATED
    shutil.copy(tmp_path / "old.cache", cache)
    async with make() as second:
        assert second.current.version == 1
        assert second.current.pins_for("127.0.0.1") == {pins["leaf"], BACKUP}
        updates.publish(v2)
        assert (await second.refresh()).status is UpdateStatus.UPDATED
        assert second.current.version == 2
        assert second.state.floor == 2
        updates.publish(v1)
        replay = await second.refresh()
        assert replay.status is UpdateStatus.REJECTED
        assert "older than version 2" in replay.reason
    async with make() as third:  # the cache moved forward with it
        assert third.current.version == 2
    assert "corrupt" not in caplog.text
