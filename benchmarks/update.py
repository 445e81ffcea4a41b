"""The update path: verify + swap, swaps under load, and the store's memory."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._core.timeutil import format_datetime

from .micro import realistic_policy
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


async def verify_and_swap(n_domains: int, repeats: int = 15) -> dict[str, Any]:
    """Median time of DynamicPins.apply_document (verify, build, swap) for one document.

    *cold*: every document has domains never seen before (a first download);
    *unchanged*: a new version of the same domains (the usual update).
    """
    key = ed25519.Ed25519PrivateKey.generate()
    pins = pinsdk.DynamicPins(
        "https://127.0.0.1/pins.json",
        [key.public_key()],
        auto_refresh=False,
        max_size=64 * 1024 * 1024,
    )
    version = 0

    async def timed(tag: str) -> tuple[float, int]:
        nonlocal version
        version += 1
        domains = realistic_policy(n_domains, tag)[0].to_dict()["domains"]
        document = pinsdk.sign_envelope(_payload(version, domains), key)
        start = time.perf_counter()
        result = await pins.apply_document(document)
        elapsed = time.perf_counter() - start
        assert result.status is pinsdk.UpdateStatus.UPDATED, result.reason
        return elapsed, len(document)

    await timed("warmup")  # discarded
    cold = [(await timed(f"c{i}"))[0] for i in range(repeats)]
    await timed("same")
    unchanged = [(await timed("same"))[0] for _ in range(repeats)]
    size = (await timed("same"))[1]
    return {
        "domains": n_domains,
        "bytes": size,
        "median_ms": statistics.median(cold) * 1e3,
        "min_ms": min(cold) * 1e3,
        "max_ms": max(cold) * 1e3,
        "unchanged_median_ms": statistics.median(unchanged) * 1e3,
    }


async def swaps_under_load(
    info: dict[str, Any], *, requests: int = 1000, swaps: int = 100
) -> dict[str, Any]:
    """``requests`` concurrent requests on fresh connections, with and without ``swaps``."""
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
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=100)

    async def burst(with_swaps: bool) -> tuple[list[float], int, int]:
        latencies: list[float] = []
        failures = 0
        applied = 0
        # The pool queue is long by design here: no pool timeout, generous I/O timeouts.
        timeout = httpx.Timeout(30.0, pool=None)
        async with pinsdk.AsyncClient(
            pins=pins, verify=_trust(info), limits=limits, timeout=timeout
        ) as client:
            pending = iter(documents[1:])
            every = max(1, requests // swaps)

            async def one() -> None:
                nonlocal failures, applied
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                    if response.status_code != 200:
                        failures += 1
                except httpx.HTTPError:
                    failures += 1
                latencies.append(time.perf_counter() - start)
                # Swap after every `every`-th completed request: spread over the whole burst.
                if with_swaps and len(latencies) % every == 0:
                    document = next(pending, None)
                    if document is not None:
                        result = await pins.apply_document(document)
                        applied += result.status is pinsdk.UpdateStatus.UPDATED

            with anyio.fail_after(300):
                async with anyio.create_task_group() as tg:
                    for _ in range(requests):
                        tg.start_soon(one)
        return latencies, failures, applied

    baseline, base_failures, _ = await burst(False)
    during, failures, applied = await burst(True)

    def summary(values: list[float]) -> dict[str, float]:
        return {f"p{q}_ms": percentile(values, q) * 1e3 for q in (50, 90, 99)}

    return {
        "requests": requests,
        "swaps_applied": applied,
        "failed_with_swaps": failures,
        "failed_without": base_failures,
        "without_swaps": summary(baseline),
        "with_swaps": summary(during),
    }


def store_memory(n_domains: int = 10_000) -> dict[str, Any]:
    """Bytes held by a PinPolicy of ``n_domains`` built from its JSON shape, as a document
    builds it (entries realised on demand) and after every entry was realised."""
    data = realistic_policy(n_domains)[0].to_dict()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    policy = pinsdk.PinPolicy.from_dict(data)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    assert len(policy.domains) == n_domains  # realises every entry
    gc.collect()
    realised = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "domains": n_domains,
        "bytes": held,
        "mb": held / 1e6,
        "realised_bytes": realised,
        "realised_mb": realised / 1e6,
    }
