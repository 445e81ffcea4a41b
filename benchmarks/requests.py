"""Plain httpx against pinsdk, interleaved request by request, in several fresh processes.

``python -m benchmarks.requests`` is the child: it reads its settings as JSON on standard
input, runs :func:`ab_samples` and writes the samples as JSON on standard output.
"""

from __future__ import annotations

import gc
import json
import ssl
import subprocess
import sys
import time
from typing import Any

import anyio
import httpx

import pinsdk

from .responder import pin_to_cpu
from .stats import Comparison, compare_processes

# Fresh processes per figure: see stats.compare_processes for why one is not enough.
PROCESSES = 6

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


async def ab_samples(
    info: dict[str, Any],
    *,
    http2: bool,
    fresh: bool,
    n: int,
    warmup: int,
    aa: bool = False,
    plain_first: bool = True,
) -> tuple[list[float], list[float], dict[str, int]]:
    """``n`` interleaved pairs of seconds per request, plain and pinned, and the pinned
    client's stats. ``fresh``: every request on a new TLS connection; else one kept-alive
    connection.

    ``aa``: an A/A run, a second plain client in pinsdk's place, to show the method
    itself finds no difference between identical clients. ``plain_first``: which client
    is built first (the processes of :func:`ab_processes` alternate it)."""
    limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
    port = info["h2"] if http2 else info["h1"]
    url = f"https://127.0.0.1:{port}/"
    policy = pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])])

    def make_plain() -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=_trust(info), http2=http2, limits=limits)

    def make_pinned() -> httpx.AsyncClient:
        if aa:
            return make_plain()
        return pinsdk.AsyncClient(pins=policy, verify=_trust(info), http2=http2, limits=limits)

    if plain_first:
        plain = make_plain()
        pinned = make_pinned()
    else:
        pinned = make_pinned()
        plain = make_plain()
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
    return a, b, stats


def ab_processes(
    info: dict[str, Any],
    *,
    http2: bool,
    fresh: bool,
    n: int,
    warmup: int,
    aa: bool = False,
    processes: int = PROCESSES,
) -> tuple[Comparison, list[float], list[float], dict[str, int], list[float]]:
    """:func:`ab_samples` in ``processes`` fresh processes, ``n`` pairs in all; returns
    the comparison over processes, the samples, the summed stats and each process's ratio."""
    groups: list[tuple[list[float], list[float]]] = []
    stats: dict[str, int] = {}
    per_process = max(1, n // processes)
    for index in range(processes):
        settings = {
            "info": info,
            "http2": http2,
            "fresh": fresh,
            "n": per_process,
            "warmup": warmup,
            "aa": aa,
            "plain_first": index % 2 == 0,
        }
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.requests"],
            input=json.dumps(settings),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if run.returncode != 0:
            raise RuntimeError(f"benchmark child failed: {run.stderr[-2000:]}")
        got = json.loads(run.stdout)
        groups.append((got["plain"], got["pinned"]))
        for key, value in got["stats"].items():
            stats[key] = stats.get(key, 0) + value
    comparison, per = compare_processes(groups)
    plain = [v for a, _ in groups for v in a]
    pinned = [v for _, b in groups for v in b]
    return comparison, plain, pinned, stats, per


def _child() -> None:
    settings = json.loads(sys.stdin.read())
    pin_to_cpu(0)  # the responder has the last CPU
    info = settings.pop("info")

    async def run() -> tuple[list[float], list[float], dict[str, int]]:
        return await ab_samples(info, **settings)

    plain, pinned, stats = anyio.run(run)
    counts = {k: v for k, v in stats.items() if isinstance(v, int)}
    json.dump({"plain": plain, "pinned": pinned, "stats": counts}, sys.stdout)


if __name__ == "__main__":
    _child()
