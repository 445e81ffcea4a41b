"""DynamicPins against a real HTTPS update server on loopback, asyncio and trio."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._core.envelope import PAYLOAD_TYPE, pae
from pinsdk._demo.loopback import LoopbackTLSServer, Reply

from .signing import ed25519_key, p256_key, payload, public_pem
from .updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"other key").digest()).decode()


def doc(signer: Any, version: int, pins: list[str], host: str = "127.0.0.1", **kw: Any) -> bytes:
    return pinsdk.sign_envelope(payload(version, [{"host": host, "pins": pins}], **kw), signer)


def signed_as_is(body: dict[str, Any], signer: Any) -> bytes:
    """An envelope over any payload, even one sign_envelope would refuse to sign."""
    data = json.dumps(body).encode()
    sig = signer.sign(pae(PAYLOAD_TYPE, data))
    return json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(data).decode(),
            "signatures": [{"sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


def dynamic(
    updates: UpdateServer, signer: Any, trust: ssl.SSLContext, **kw: Any
) -> pinsdk.DynamicPins:
    kw.setdefault("auto_refresh", False)
    return pinsdk.DynamicPins(updates.url, [public_pem(signer)], verify=trust, **kw)


async def test_update_then_conditional_get(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    updates.publish(doc(signer, 2, [pins["leaf"], BACKUP]), etag='"v2"')
    pinned = dynamic(updates, signer, device_trust())
    assert pinned.current == PinPolicy()
    first = await pinned.refresh()
    assert first.status is UpdateStatus.UPDATED, first.reason
    assert first.version == 2
    assert first.http_status == 200
    assert pinned.current.version == 2
    assert pinned.current.pins_for("127.0.0.1") == {pins["leaf"], BACKUP}
    second = await pinned.refresh()
    assert second.status is UpdateStatus.NOT_MODIFIED
    assert second.http_status == 304
    assert updates.server.requests[-1]["if-none-match"] == '"v2"'
    state = pinned.state
    assert state.last_result == second
    assert state.last_success == second.at
    assert not state.stale
    assert state.version == 2


def _bad_documents(signer: Any, pins: dict[str, str]) -> dict[str, tuple[bytes, str, str]]:
    good_pins = [pins["leaf"], BACKUP]
    return {
        "forged": (doc(ed25519_key(), 9, good_pins), "application/json", "signed by 0 of"),
        "rollback": (doc(signer, 1, good_pins), "application/json", "older than version 5"),
        "equivocation": (
            doc(signer, 5, [pins["root"], BACKUP]),
            "application/json",
            "equivocation",
        ),
        "expired": (
            doc(signer, 9, good_pins, expires_in=-3600, issued_ago=7200),
            "application/json",
            "expired at",
        ),
        "garbage": (b"<html>hello</html>", "application/json", "not valid JSON"),
        "content-type": (
            doc(signer, 9, good_pins),
            "text/html",
            "unexpected Content-Type 'text/html'",
        ),
        "bad pin": (
            # sign_envelope refuses this payload; a hostile signer writes it by hand.
            signed_as_is(payload(9, [{"host": "a.com", "pins": ["sha256/short"]}]), signer),
            "application/json",
            "'sha256/short'",
        ),
    }


@pytest.mark.parametrize(
    "case", ["forged", "rollback", "equivocation", "expired", "garbage", "content-type", "bad pin"]
)
async def test_rejected_documents_leave_pins_exactly_as_they_were(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    case: str,
) -> None:
    pinned = dynamic(updates, signer, device_trust())
    updates.publish(doc(signer, 5, [pins["leaf"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    before = pinned.current
    body, ctype, reason = _bad_documents(signer, pins)[case]
    updates.publish(body, ctype=ctype)
    result = await pinned.refresh()
    assert result.status is UpdateStatus.REJECTED
    assert reason in result.reason
    assert pinned.current is before
    assert result.version == 5
    assert pinned.state.consecutive_failures == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((500, [], b"oops"), "HTTP 500 from the update server"),
        ((404, [], b""), "HTTP 404"),
        (
            (302, [("Location", "https://elsewhere.test/pins.json")], b""),
            "redirect to https://elsewhere.test",
        ),
    ],
)
async def test_http_trouble_is_failed(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    reply: Reply,
    reason: str,
) -> None:
    pinned = dynamic(updates, signer, device_trust())
    updates.reply = reply
    result = await pinned.refresh()
    assert result.status is UpdateStatus.FAILED
    assert reason in result.reason
    assert pinned.current == PinPolicy()


async def test_unreachable_server_is_failed(
    signer: Any, device_trust: Callable[[], ssl.SSLContext]
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    pinned = pinsdk.DynamicPins(
        f"https://127.0.0.1:{port}/pins.json",
        [public_pem(signer)],
        auto_refresh=False,
        verify=device_trust(),
    )
    result = await pinned.refresh()
    assert result.status is UpdateStatus.FAILED
    assert "ConnectError" in result.reason


async def test_oversized_documents_are_cut_off(
    updates: UpdateServer, signer: Any, device_trust: Callable[[], ssl.SSLContext]
) -> None:
    pinned = dynamic(updates, signer, device_trust(), max_size=4096)
    updates.reply = (200, [("Content-Type", "application/json")], b" " * 5000)
    declared = await pinned.refresh()
    assert declared.status is UpdateStatus.REJECTED
    assert "5000 bytes; max_size is 4096" in declared.reason
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # bounded: the client hangs up long before
            sent.append(1024)
            yield b" " * 1024

    updates.reply = (200, [("Content-Type", "application/json")], endless())
    streamed = await pinned.refresh()
    assert streamed.status is UpdateStatus.REJECTED
    assert "larger than max_size (4096 bytes); download aborted" in streamed.reason
    assert updates.server.wait_idle()
    assert len(sent) < 10_000


async def test_slow_body_cannot_hold_the_refresher(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    body = doc(signer, 2, [pins["leaf"], BACKUP])
    stop = threading.Event()

    def drip() -> Iterator[bytes]:
        for byte in body:
            if stop.wait(0.05):  # one byte every 50 ms: each read is "on time"
                return
            yield bytes([byte])

    pinned = dynamic(updates, signer, device_trust(), timeout=0.3)
    updates.reply = (200, [("Content-Type", "application/json")], drip())
    with anyio.fail_after(5):
        result = await pinned.refresh()
    stop.set()
    assert result.status is UpdateStatus.FAILED
    assert "did not finish within 0.9 s" in result.reason


async def test_key_rotation_end_to_end(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    rogue_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    pins: dict[str, str],
) -> None:
    """A server the old pins reject is accepted after the update arrives, and vice versa."""
    old_api, new_api = serve(api_cert), serve(rogue_cert)
    bootstrap = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    pinned = dynamic(updates, signer, device_trust(), bootstrap=bootstrap)
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        assert (await client.get(old_api.url())).status_code == 200
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(new_api.url())
    new_root = pinsdk.spki_pin(rogue_ca.cert_pem.bytes())
    updates.publish(doc(signer, 1, [new_root, BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        assert (await client.get(new_api.url())).status_code == 200
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(old_api.url())
    assert old_api.wait_idle()


async def test_signing_key_rotation_through_the_server(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    new_key = p256_key()
    pinned = dynamic(updates, signer, device_trust())
    rotation = pinsdk.sign_envelope(
        payload(
            2,
            [{"host": "127.0.0.1", "pins": [pins["leaf"], BACKUP]}],
            keys={"trusted": [public_pem(new_key)], "threshold": 1},
        ),
        [signer, new_key],
    )
    updates.publish(rotation)
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    assert pinned.state.keyids == (pinsdk.keyid_of(new_key.public_key()),)
    updates.publish(doc(signer, 3, [pins["root"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.REJECTED
    updates.publish(doc(new_key, 3, [pins["root"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED


async def test_update_host_is_pinned_by_the_document(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """The fetch goes through the pinned client: a document can pin its own update host."""
    pinned = dynamic(updates, signer, device_trust())
    updates.publish(doc(signer, 2, [BACKUP, OTHER], host="localhost"))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    updates.publish(doc(signer, 3, [pins["leaf"], BACKUP], host="localhost"))
    blocked = await pinned.refresh()
    assert blocked.status is UpdateStatus.FAILED
    assert "PinValidationError" in blocked.reason
    assert pinned.current.version == 2


async def test_background_refresher_picks_up_updates(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    seen: list[pinsdk.UpdateResult] = []
    arrived = {2: anyio.Event(), 3: anyio.Event()}

    async def on_update(result: pinsdk.UpdateResult) -> None:
        seen.append(result)
        if result.status is UpdateStatus.UPDATED and result.version in arrived:
            arrived[result.version].set()

    updates.publish(doc(signer, 2, [pins["leaf"], BACKUP]))
    updates.gate = threading.Event()
    pinned = dynamic(
        updates,
        signer,
        device_trust(),
        auto_refresh=True,
        refresh_interval=0.05,
        on_update=on_update,
    )
    with anyio.fail_after(10):
        async with pinned:
            assert pinned.state.last_result is None  # entering did not wait for the fetch
            updates.gate.set()
            await arrived[2].wait()
            assert pinned.current.version == 2
            updates.publish(doc(signer, 3, [pins["root"], BACKUP]))
            await arrived[3].wait()
            assert pinned.current.pins_for("127.0.0.1") == {pins["root"], BACKUP}
    count = len(seen)
    assert pinned._refresher is None  # leaving stopped the refresher
    assert count >= 2
    assert {r.status for r in seen} <= {UpdateStatus.UPDATED, UpdateStatus.NOT_MODIFIED}


async def test_callback_errors_do_not_stop_the_refresher(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = anyio.Event()
    calls: list[int] = []

    def on_update(result: pinsdk.UpdateResult) -> None:
        calls.append(1)
        if len(calls) == 3:
            done.set()
        raise RuntimeError("callback bug")

    updates.publish(doc(signer, 2, [pins["leaf"], BACKUP]))
    with anyio.fail_after(10):
        async with dynamic(
            updates,
            signer,
            device_trust(),
            auto_refresh=True,
            refresh_interval=0.01,
            on_update=on_update,
        ):
            await done.wait()
    assert "on_update callback failed" in caplog.text


async def test_cache_survives_restart_and_keeps_the_rollback_floor(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
) -> None:
    cache = tmp_path / "state" / "pins.cache"
    updates.publish(doc(signer, 7, [pins["leaf"], BACKUP], expires_in=2, issued_ago=1), etag='"e7"')
    first = dynamic(updates, signer, device_trust(), cache_path=cache)
    async with first:
        assert (await first.refresh()).status is UpdateStatus.UPDATED
    assert cache.exists()
    assert sorted(p.name for p in cache.parent.iterdir()) == ["pins.cache", "pins.cache.lock"]
    # Later, after the document expired: it still loads, still pins, and is the floor.
    second = dynamic(updates, signer, device_trust(), cache_path=cache)
    async with second:
        assert second.current.version == 7
        assert second.current.pins_for("127.0.0.1") == {pins["leaf"], BACKUP}
        updates.publish(doc(signer, 6, [pins["root"], BACKUP]))
        result = await second.refresh()
    assert result.status is UpdateStatus.REJECTED
    assert "older than version 7" in result.reason


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "foreign-signed"])
async def test_tampered_cache_is_ignored_with_a_warning(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    cache = tmp_path / "pins.cache"
    updates.publish(doc(signer, 4, [pins["leaf"], BACKUP]))
    async with dynamic(updates, signer, device_trust(), cache_path=cache) as first:
        await first.refresh()
    content = json.loads(cache.read_bytes())
    if damage == "flip":
        envelope = json.loads(base64.b64decode(content["document"]))
        inner = json.loads(base64.b64decode(envelope["payload"]))
        inner["domains"][0]["pins"] = [pins["root"], BACKUP]
        envelope["payload"] = base64.b64encode(json.dumps(inner).encode()).decode()
        content["document"] = base64.b64encode(json.dumps(envelope).encode()).decode()
        cache.write_text(json.dumps(content))
    elif damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:40])
    elif damage == "garbage":
        cache.write_bytes(os.urandom(300))
    else:
        forged = doc(ed25519_key(), 99, [pins["root"], BACKUP])
        content["document"] = base64.b64encode(forged).decode()
        cache.write_text(json.dumps(content))
    bootstrap = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with dynamic(
            updates, signer, device_trust(), cache_path=cache, bootstrap=bootstrap
        ) as second:
            assert second.current is bootstrap
    assert "pin cache" in caplog.text


async def test_crash_between_write_and_rename_keeps_the_last_good_cache(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "pins.cache"
    pinned = dynamic(updates, signer, device_trust(), cache_path=cache)
    updates.publish(doc(signer, 1, [pins["leaf"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED
    good = cache.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr("pinsdk._cache._replace", crash)
    updates.publish(doc(signer, 2, [pins["root"], BACKUP]))
    assert (await pinned.refresh()).status is UpdateStatus.UPDATED  # in memory
    assert "could not write pin cache" in caplog.text
    assert cache.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pins.cache", "pins.cache.lock"]
    monkeypatch.undo()
    restarted = dynamic(updates, signer, device_trust(), cache_path=cache)
    async with restarted:
        assert restarted.current.version == 1


async def test_bootstrap_envelope_and_expiry_modes(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    stale = doc(signer, 3, [pins["leaf"], BACKUP], expires_in=-60, issued_ago=3600)
    keep = dynamic(updates, signer, device_trust(), bootstrap=stale)
    assert keep.current.version == 3
    assert keep.current.pins_for("127.0.0.1") == {pins["leaf"], BACKUP}
    assert keep.state.stale
    unpin = dynamic(updates, signer, device_trust(), bootstrap=stale, on_expiry="unpin")
    assert unpin.current == PinPolicy()
    assert unpin.state.stale
    with pytest.raises(pinsdk.PinConfigError, match="bootstrap document does not verify"):
        dynamic(
            updates, signer, device_trust(), bootstrap=doc(ed25519_key(), 1, [pins["leaf"], BACKUP])
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update_url": "http://127.0.0.1/pins.json"}, "must be an https:// URL"),
        ({"threshold": 2}, "threshold 2 is more than the 1"),
        ({"refresh_interval": 0}, "refresh_interval must be a positive"),
        ({"timeout": -1}, "timeout must be a positive"),
        ({"max_size": 10}, "max_size must be an integer of at least 1024"),
        ({"on_expiry": "drop"}, "on_expiry must be 'keep' or 'unpin'"),
        ({"bootstrap": "pins.json"}, "bootstrap must be a PinPolicy"),
        ({"verify": False}, "verify=False"),
    ],
)
def test_configuration_errors(signer: Any, kwargs: dict[str, Any], message: str) -> None:
    args = {
        "update_url": "https://127.0.0.1/pins.json",
        "trusted_keys": [public_pem(signer)],
        **kwargs,
    }
    with pytest.raises(pinsdk.PinConfigError, match=message):
        pinsdk.DynamicPins(**args)


def test_schedule_follows_document_suggestion_and_backs_off(
    signer: Any, device_trust: Callable[[], ssl.SSLContext], pins: dict[str, str]
) -> None:
    suggested = doc(signer, 1, [pins["leaf"], BACKUP], refresh_interval=5)  # clamped up to 60 s
    pinned = pinsdk.DynamicPins(
        "https://localhost/pins.json",
        [public_pem(signer)],
        bootstrap=suggested,
        refresh_interval=3600,
        auto_refresh=False,
        verify=device_trust(),
    )
    ok = pinsdk.UpdateResult(UpdateStatus.NOT_MODIFIED, "", 1, pinned.state.expires)  # type: ignore[arg-type]
    delays = [pinned.next_delay(ok) for _ in range(50)]
    assert all(54 <= d <= 66 for d in delays)
    failed = pinsdk.UpdateResult(UpdateStatus.FAILED, "", 1, pinned.state.expires)  # type: ignore[arg-type]
    backoffs = []
    for n in range(1, 6):
        pinned._failures = n
        backoffs.append(max(pinned.next_delay(failed) for _ in range(30)))
    assert backoffs[0] <= 5
    assert backoffs[3] > backoffs[0]
    assert all(b <= 60 for b in backoffs)


async def test_no_request_fails_because_of_swaps(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """Handshakes read whichever policy is in force; swapping between valid ones never fails one."""
    import httpx

    server = serve(api_cert, http2=False)

    class Source:
        """Records which policy versions the handshakes actually read."""

        def __init__(self) -> None:
            self.policy = PinPolicy([DomainPins("127.0.0.1", [pins["leaf"], BACKUP])])
            self.read: set[int] = set()

        @property
        def current(self) -> PinPolicy:
            policy = self.policy
            self.read.add(policy.version)
            # The worst case on top of the swapper task: a swap right after every read.
            self.policy = policies[(policy.version + 1) % len(policies)]
            return policy

    policies = [
        PinPolicy([DomainPins("127.0.0.1", [pins[which], BACKUP])], version=n)
        for n, which in enumerate(["leaf", "intermediate", "root"])
    ]
    swaps = 0
    source = Source()
    failures: list[BaseException] = []
    done = anyio.Event()
    limits = httpx.Limits(max_keepalive_connections=0)  # every request is a new handshake
    async with pinsdk.AsyncClient(pins=source, verify=device_trust(), limits=limits) as client:

        async def swapper() -> None:
            nonlocal swaps
            while not done.is_set() and swaps < 1_000_000:  # bounded
                source.policy = policies[swaps % len(policies)]
                swaps += 1
                await anyio.sleep(0)

        async def request() -> None:
            try:
                response = await client.get(server.url())
                assert response.status_code == 200
            except Exception as exc:  # collected: the assertion is on the whole run
                failures.append(exc)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(swapper)
                async with anyio.create_task_group() as requests:
                    for _ in range(100):
                        requests.start_soon(request)
                done.set()
    assert failures == []
    assert server.handshakes_completed >= 100
    assert len(source.read) == 3  # handshakes really ran under each of the swapped policies


async def test_apply_document_uses_the_same_rules(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
) -> None:
    pinned = dynamic(updates, signer, device_trust(), cache_path=tmp_path / "c")
    v3 = doc(signer, 3, [pins["leaf"], BACKUP])
    assert (await pinned.apply_document(v3)).status is UpdateStatus.UPDATED
    assert pinned.current.version == 3
    assert (tmp_path / "c").exists()
    assert (await pinned.apply_document(v3)).status is UpdateStatus.NOT_MODIFIED
    stale = await pinned.apply_document(doc(signer, 2, [pins["root"], BACKUP]))
    assert stale.status is UpdateStatus.REJECTED
    forged = await pinned.apply_document(doc(ed25519_key(), 9, [pins["root"], BACKUP]))
    assert forged.status is UpdateStatus.REJECTED
    assert pinned.current.version == 3
    assert pinned.stats()["updates_accepted"] == 1
    assert pinned.stats()["updates_rejected"] == 2
