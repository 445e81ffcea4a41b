"""Self-healing: an enforced pin failure refreshes dynamic pins and retries once."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import trustme

import pinsdk
from pinsdk import UpdateStatus
from pinsdk._demo.loopback import LoopbackTLSServer

from .signing import payload, public_pem
from .updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


def doc(signer: Any, version: int, pins: list[str]) -> bytes:
    return pinsdk.sign_envelope(payload(version, [{"host": "127.0.0.1", "pins": pins}]), signer)


@pytest.fixture
def rotated(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    rogue_ca: trustme.CA,
) -> tuple[pinsdk.DynamicPins, str]:
    """Pins v1 (the old CA) are in force; the server already moved to the new CA's key."""
    updates.bootstrap = doc(signer, 1, [pins["intermediate"], BACKUP])  # type: ignore[attr-defined]
    pinned = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=updates.bootstrap,  # type: ignore[attr-defined]
        auto_refresh=False,
        verify=device_trust(),
    )
    new_pin = pinsdk.spki_pin(rogue_ca.cert_pem.bytes())
    return pinned, new_pin


async def test_post_is_retried_after_the_rotation_without_the_server_seeing_it_twice(
    rotated: tuple[pinsdk.DynamicPins, str],
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    pinned, new_pin = rotated
    new_server = serve(rogue_cert, http2=False)
    updates.publish(doc(signer, 2, [new_pin, BACKUP]))
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        response = await client.post(new_server.url(path="/transfer"), content=b"amount=100")
        stats = client.stats()
    assert response.status_code == 200
    assert pinned.current.version == 2
    assert new_server.wait_idle()
    assert new_server.handshakes_failed == 1  # the refused first connection: no byte delivered
    assert [r[":body"] for r in new_server.requests] == ["amount=100"]  # exactly once
    assert stats["self_heal_retries"] == 1
    assert stats["pin_failures_enforced"] == 1
    assert pinned.stats()["self_heal_refreshes"] == 1
    assert pinned.stats()["updates_accepted"] == 1


async def test_concurrent_failures_share_one_refresh(
    rotated: tuple[pinsdk.DynamicPins, str],
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
) -> None:
    pinned, new_pin = rotated
    new_server = serve(rogue_cert, http2=False)
    updates.publish(doc(signer, 2, [new_pin, BACKUP]))
    updates.gate = threading.Event()  # hold the refresh until every request has failed
    failed = 0
    all_failed = anyio.Event()

    def on_failure(event: pinsdk.PinFailure) -> None:
        nonlocal failed
        failed += 1
        if failed == 5:
            all_failed.set()

    codes: list[int] = []
    async with pinsdk.AsyncClient(
        pins=pinned, verify=device_trust(), on_pin_failure=on_failure
    ) as client:

        async def call() -> None:
            codes.append((await client.get(new_server.url())).status_code)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(call)
                await all_failed.wait()
                updates.gate.set()
    assert codes == [200] * 5
    assert len(updates.server.requests) == 1
    assert pinned.stats()["self_heal_refreshes"] == 1


async def test_no_retry_when_the_pins_did_not_change_and_refreshes_are_rate_limited(
    rotated: tuple[pinsdk.DynamicPins, str],
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    pinned, _ = rotated
    new_server = serve(rogue_cert, http2=False)
    updates.publish(updates.bootstrap)  # type: ignore[attr-defined]  # the same document
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.post(new_server.url(), content=b"x")
        with pytest.raises(pinsdk.PinValidationError):
            await client.post(new_server.url(), content=b"x")
        stats = client.stats()
    assert pinned.state.last_result is not None
    assert pinned.state.last_result.status is UpdateStatus.NOT_MODIFIED
    assert len(updates.server.requests) == 1  # the second failure was within the minute
    assert stats["self_heal_retries"] == 0
    assert new_server.requests == []


async def test_static_pins_and_other_errors_are_never_retried(
    updates: UpdateServer,
    signer: Any,
    serve: Callable[..., LoopbackTLSServer],
    rogue_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    rotated: tuple[pinsdk.DynamicPins, str],
) -> None:
    new_server = serve(rogue_cert, http2=False)
    static = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    async with pinsdk.AsyncClient(pins=static, verify=device_trust()) as client:
        with pytest.raises(pinsdk.PinValidationError):
            await client.get(new_server.url())
        assert client.stats()["self_heal_retries"] == 0
    pinned, _ = rotated
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed_port = s.getsockname()[1]
    async with pinsdk.AsyncClient(pins=pinned, verify=device_trust()) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{closed_port}/")
        assert not isinstance(info.value, pinsdk.PinningError)
    assert updates.server.requests == []
    assert pinned.stats()["self_heal_refreshes"] == 0
