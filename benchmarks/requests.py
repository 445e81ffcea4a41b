"""Plain httpx against pinsdk, interleaved request by request in one process."""

from __future__ import annotations

import gc
import ssl
import time
from typing import Any

import httpx

import pinsdk

from .stats import Comparison, compare

_BATCH = 100  # pairs between two (untimed) garbage collections


def _trust(info: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=info["ca_pem"])
    return ctx


async def _timed(client: httpx.AsyncClient, url: str) -> float:
    start = time.perf_counter()
    response = await client.get(url)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"unexpected HTTP {response.status_code}")
    return elapsed


async def ab_run(
    info: dict[str, Any], *, http2: bool, fresh: bool, n: int, warmup: int, aa: bool = False
) -> tuple[Comparison, list[float], list[float], dict[str, int]]:
    """``fresh``: every request on a new TLS connection; else one kept-alive connection.

    ``aa``: an A/A run, a second plain client in pinsdk's place, to show the method
    itself finds no difference between identical clients."""
    limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
    port = info["h2"] if http2 else info["h1"]
    url = f"https://127.0.0.1:{port}/"
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])
    plain = httpx.AsyncClient(verify=_trust(info), http2=http2, limits=limits)
    pinned: httpx.AsyncClient = (
        httpx.AsyncClient(verify=_trust(info), http2=http2, limits=limits)
        if aa
        else pinsdk.AsyncClient(pins=policy, verify=_trust(info), http2=http2, limits=limits)
    )
    async with plain, pinned:
        for _ in range(warmup):  # discarded
            await _timed(plain, url)
            await _timed(pinned, url)
        a: list[float] = []
        b: list[float] = []
        # As timeit does, the collector is paused while requests are timed (a collection
        # would land on whichever request happens to run) and run between batches.
        gc.collect()
        gc.disable()
        try:
            for i in range(n):
                if i % _BATCH == 0:
                    gc.collect()
                # ABBA ordering: whatever favours the first or second request cancels out.
                if i % 2 == 0:
                    a.append(await _timed(plain, url))
                    b.append(await _timed(pinned, url))
                else:
                    b.append(await _timed(pinned, url))
                    a.append(await _timed(plain, url))
        finally:
            gc.enable()
        stats = pinned.stats() if isinstance(pinned, pinsdk.AsyncClient) else {}
    return compare(a, b), a, b, stats
