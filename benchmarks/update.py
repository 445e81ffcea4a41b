"""Swaps under load: pinsdk's own cost while updates are applied during requests.

(Verify + swap and memory at every size are in :mod:`.scale`.)
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._core.timeutil import format_datetime

from .requests import _trust
from .stats import percentile


def _payload(version: int, domains: list[dict[str, Any]]) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "spec_version": 1,
        "version": version,
        "issued_at": format_datetime(now - timedelta(minutes=1)),
        "expires": format_datetime(now + timedelta(days=1)),
        "domains": domains,
    }


async def swaps_under_load(
    info: dict[str, Any], *, requests: int = 1000, swaps: int = 100, concurrency: int = 20
) -> dict[str, Any]:
    """``requests`` requests on new connections from ``concurrency`` workers (no more than
    the pool holds: no request waits in httpcore's pool queue, whose wait would swamp
    everything else), once without and once with ``swaps`` verify-and-swap updates
    spread over them. pinsdk's own cost under load is the difference between the two
    latency distributions, plus how long each swap took; every request must succeed."""
    key = ed25519.Ed25519PrivateKey.generate()
    domains = [{"host": "127.0.0.1", "pins": info["pins"]}] + [
        {"host": f"s{i}.example.com", "pins": info["pins"]} for i in range(9)
    ]
    documents = [pinsdk.sign_envelope(_payload(v, domains), key) for v in range(1, swaps + 2)]
    pins = pinsdk.DynamicPins(
        "https://127.0.0.1/pins.json",
        [key.public_key()],
        bootstrap=documents[0],
        auto_refresh=False,
    )
    url = f"https://127.0.0.1:{info['h1']}/"
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=concurrency)

    async def burst(with_swaps: bool) -> tuple[list[float], int, list[float]]:
        latencies: list[float] = []
        swap_times: list[float] = []
        failures = 0
        async with pinsdk.AsyncClient(
            pins=pins, verify=_trust(info), limits=limits, timeout=30.0
        ) as client:
            pending = iter(documents[1:])
            every = max(1, requests // swaps)
            todo = iter(range(requests))

            async def worker() -> None:
                nonlocal failures
                for n in todo:
                    start = time.perf_counter()
                    try:
                        response = await client.get(url)
                        if response.status_code != 200:
                            failures += 1
                    except httpx.HTTPError:
                        failures += 1
                    latencies.append(time.perf_counter() - start)
                    if with_swaps and n % every == every - 1:
                        document = next(pending, None)
                        if document is not None:
                            began = time.perf_counter()
                            result = await pins.apply_document(document)
                            swap_times.append(time.perf_counter() - began)
                            if result.status is not pinsdk.UpdateStatus.UPDATED:
                                failures += 1

            with anyio.fail_after(600):
                async with anyio.create_task_group() as tg:
                    for _ in range(concurrency):
                        tg.start_soon(worker)
        return latencies, failures, swap_times

    baseline, base_failures, _ = await burst(False)
    during, failures, swap_times = await burst(True)

    def summary(values: list[float]) -> dict[str, float]:
        return {f"p{q}_ms": percentile(values, q) * 1e3 for q in (50, 90, 99)}

    return {
        "requests": requests,
        "concurrency": concurrency,
        "swaps_applied": len(swap_times),
        "failed_with_swaps": failures,
        "failed_without": base_failures,
        "without_swaps": summary(baseline),
        "with_swaps": summary(during),
        "swap_ms": summary(swap_times) if swap_times else {},
    }
