"""Rows 8 and 9 of the attack matrix: swaps under concurrency, and crashes during cache writes."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

import pinsdk
from pinsdk import UpdateStatus
from pinsdk._demo.loopback import LoopbackTLSServer

from ..signing import ed25519_key, payload, public_pem
from ..updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()


async def test_row08_100_swaps_during_1000_concurrent_requests(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
) -> None:
    """0 false failures, and every handshake read a whole, verified policy (never a half-built
    one: policies are immutable and swapped by one assignment)."""
    server = serve(api_cert, http2=False)
    key = ed25519_key()
    which = ["leaf", "intermediate", "root"]
    documents = [
        pinsdk.sign_envelope(
            payload(v, [{"host": "127.0.0.1", "pins": [pins[which[v % 3]], BACKUP]}]), key
        )
        for v in range(1, 102)
    ]
    source = pinsdk.DynamicPins(
        "https://localhost:9/pins.json",
        [public_pem(key)],
        bootstrap=documents[0],
        auto_refresh=False,
        self_heal_interval=None,
        verify=device_trust(),
    )
    seen_versions: set[int] = set()

    class Observed:
        """Wraps the real source to record which policies handshakes read."""

        @property
        def current(self) -> pinsdk.PinPolicy:
            policy = source.current
            assert isinstance(policy, pinsdk.PinPolicy)
            assert policy.pins_for("127.0.0.1")  # whole: the entry and its index are there
            seen_versions.add(policy.version)
            return policy

    failures: list[BaseException] = []
    completed = 0
    applied = 0
    pending = iter(documents[1:])
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=100)
    async with pinsdk.AsyncClient(
        pins=Observed(), verify=device_trust(), limits=limits, timeout=httpx.Timeout(60, pool=None)
    ) as client:

        async def one() -> None:
            nonlocal completed, applied
            try:
                response = await client.get(server.url())
                assert response.status_code == 200
            except Exception as exc:  # collected: the assertion is on the whole run
                failures.append(exc)
            completed += 1
            if completed % 10 == 0:  # a swap after every tenth request: spread over the run
                document = next(pending, None)
                if document is not None:
                    result = await source.apply_document(document)
                    applied += result.status is UpdateStatus.UPDATED

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(one)
        stats = client.stats()
    assert failures == []
    assert applied == 100
    assert stats["handshakes_checked"] == 1000
    assert stats["pin_failures_enforced"] == 0
    assert len(seen_versions) >= 10  # handshakes really ran under many successive policies


async def test_row09_crash_between_write_and_rename(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process dies after the temp file is written but before it is renamed: on the next
    start the last good document is intact, for the cache and for the rollback floor alike."""
    updates = UpdateServer(serve, api_cert)
    key = ed25519_key()
    cache = tmp_path / "pins.cache"

    def make() -> pinsdk.DynamicPins:
        return pinsdk.DynamicPins(
            updates.url,
            [public_pem(key)],
            auto_refresh=False,
            verify=device_trust(),
            cache_path=cache,
        )

    async with make() as first:
        updates.publish(
            pinsdk.sign_envelope(
                payload(1, [{"host": "127.0.0.1", "pins": [pins["leaf"], BACKUP]}]), key
            )
        )
        assert (await first.refresh()).status is UpdateStatus.UPDATED
    good = cache.read_bytes()

    class Crash(BaseException):
        """Stands for the process being killed: not an OSError anyone could handle."""

    def die(src: str, dst: str) -> None:
        assert os.path.exists(src)  # the new content was fully written and fsynced
        raise Crash

    monkeypatch.setattr("pinsdk._cache._replace", die)
    second = make()
    updates.publish(
        pinsdk.sign_envelope(
            payload(2, [{"host": "127.0.0.1", "pins": [pins["root"], BACKUP]}]), key
        )
    )
    with pytest.raises(Crash):
        async with second:
            await second.refresh()
    monkeypatch.undo()
    assert cache.read_bytes() == good
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    async with make() as third:  # the next start
        assert third.current.version == 1
        assert third.current.pins_for("127.0.0.1") == {pins["leaf"], BACKUP}
    assert all(name.startswith(".pinsdk-cache-") for name in leftovers)
