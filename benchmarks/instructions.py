"""Instructions counted by valgrind: figures no other load on the machine disturbs.

``python -m benchmarks.instructions 1000 100000`` runs, for each count and kind, a child that
builds the scale benchmark's policy and looks up 200 hosts 50 times, and the same child
looking up none, both under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``; the
difference divided by 10,000 is printed. Needs valgrind; takes minutes.

:func:`per_request` (a stage of ``make bench`` when valgrind is installed) counts the
client's instructions per request, on new connections and on a kept-alive one, plain
httpx and pinsdk, against the benchmark responder: the work pinsdk adds, free of the
timing noise that limits the latency ratios. A count is exact for one memory layout of
the process, and layouts differ by thousands of instructions a request, so a figure near
its goal is counted in several (:data:`LAYOUT_PADS`) and their median reported.
"""

from __future__ import annotations

import gc
import os
import random
import re
import statistics
import subprocess
import sys
from typing import Any

REPEAT = 50
HOSTS = 200


REQUESTS = 60  # counted requests per child (after 20 that warm it up)
_WARMUP = 20
# Memory layouts, as lengths of a padding environment variable (the environment lies at
# the top of the stack, so its length moves what lies below it). A count repeats to within
# a few hundred instructions in one layout, but not across layouts: on 2026-12-03 the same
# code's kept-alive request added 5,672 instructions in one, -1,452 in another, 829 in a
# third (not traced; likely where objects hashed by their address land in dicts and sets).
LAYOUT_PADS = (1, 64, 700, 2900, 5100)


def _request_child(kind: str, fresh: bool, requests: int, info_file: str) -> None:
    import json

    import anyio
    import httpx

    import pinsdk

    from .requests import _trust

    with open(info_file) as f:
        info = json.load(f)
    # As the timed benchmarks do: a collection lands wherever an allocation count crosses
    # a threshold, which the network's timing shifts from run to run: with it, one count of
    # pinsdk's differed from the next by 20,000 instructions a request; without it, by
    # a few hundred.
    gc.collect()
    gc.disable()
    if kind.startswith("aiohttp"):
        _aiohttp_child(kind == "aiohttp, pinned context", requests, info)
        return
    limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
    client = (
        pinsdk.AsyncClient(
            pins=pinsdk.PinPolicy([pinsdk.DomainPins("127.0.0.1", info["pins"])]),
            verify=_trust(info),
            limits=limits,
        )
        if kind == "pinsdk"
        else httpx.AsyncClient(verify=_trust(info), limits=limits)
    )
    url = f"https://127.0.0.1:{info['h1']}/"

    async def run() -> None:
        async with client:
            for _ in range(_WARMUP + requests):
                response = await client.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected HTTP {response.status_code}")
            if isinstance(client, pinsdk.AsyncClient):
                checked = client.stats()["handshakes_checked"]
                if checked != (_WARMUP + requests if fresh else 1):
                    raise RuntimeError(f"pins were not checked on every connection: {checked}")

    anyio.run(run)


def _aiohttp_child(pinned: bool, requests: int, info: dict[str, Any]) -> None:
    """aiohttp on new connections (``force_close``), on the pinned context or a plain one."""
    import asyncio

    import aiohttp

    from .clients import _pinned
    from .requests import _trust

    url = f"https://127.0.0.1:{info['h1']}/"

    async def run() -> None:
        connector = aiohttp.TCPConnector(
            ssl=_pinned(info) if pinned else _trust(info), force_close=True
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(_WARMUP + requests):
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"unexpected HTTP {response.status}")

    asyncio.run(run())


# The pairs counted: (unpinned, pinned) client kinds of _request_child.
PAIRS = {"httpx": ("httpx", "pinsdk"), "aiohttp": ("aiohttp", "aiohttp, pinned context")}


def per_request(
    info_file: str,
    *,
    fresh: bool,
    requests: int = REQUESTS,
    client: str = "httpx",
    layouts: int = 1,
) -> dict[str, Any]:
    """The client's instructions per HTTP/1.1 request against the benchmark responder,
    unpinned and pinned (``PAIRS[client]``; for httpx, plain ``httpx.AsyncClient`` and
    ``pinsdk.AsyncClient``): each on a new connection (``fresh``) or all on one kept
    alive (httpx only); (the count with ``requests`` more) minus (the count with none),
    over ``requests``, in each of the first ``layouts`` of :data:`LAYOUT_PADS`.

    Keys: ``unpinned`` (the median over layouts), ``added`` (the median over layouts of
    pinned minus unpinned, both counted in that layout), ``pinned`` (``unpinned`` plus
    ``added``) and ``layouts`` (each layout's pad and counts)."""
    rows: list[dict[str, float]] = []
    for pad in LAYOUT_PADS[:layouts]:
        row = {"pad": float(pad)}
        for key, kind in zip(("unpinned", "pinned"), PAIRS[client], strict=True):
            counts = [
                _valgrind(
                    [
                        "--request-child",
                        kind,
                        "fresh" if fresh else "keep-alive",
                        str(m),
                        info_file,
                    ],
                    pad=pad,
                )
                for m in (0, requests)
            ]
            row[key] = (counts[1] - counts[0]) / requests
        rows.append(row)
    unpinned = statistics.median(row["unpinned"] for row in rows)
    added = statistics.median(row["pinned"] - row["unpinned"] for row in rows)
    return {"unpinned": unpinned, "added": added, "pinned": unpinned + added, "layouts": rows}


def _child(n: int, kind: str, repeat: int) -> None:
    import pinsdk

    from .scale import domains_and_hosts, grouped

    domains, hosts = domains_and_hosts(n)
    rest, groups = grouped(domains)
    policy = pinsdk.PinPolicy.from_dict({"domains": rest, "host_groups": groups})
    sample = random.Random(1).sample(hosts[kind], min(HOSTS, len(hosts[kind])))
    sample = (sample * (HOSTS // len(sample) + 1))[:HOSTS]
    for host in sample:
        policy.lookup(host)
    for _ in range(repeat):
        for host in sample:
            policy.lookup(host)


def _count(n: int, kind: str, repeat: int) -> int:
    return _valgrind(["--child", str(n), kind, str(repeat)])


def _valgrind(child_args: list[str], pad: int = 1) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PINSDK_BENCH_LAYOUT": "x" * pad}
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            *child_args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {run.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(int(argv[1]), argv[2], int(argv[3]))
        return 0
    if argv[:1] == ["--request-child"]:
        _request_child(argv[1], argv[2] == "fresh", int(argv[3]), argv[4])
        return 0
    from .scale import KINDS

    counts = [int(a) for a in argv] or [1_000, 100_000]
    print(f"instructions per PinPolicy.lookup ({HOSTS} hosts x {REPEAT}, callgrind):")
    print(f"  {'domains':>9}  " + "  ".join(f"{k:>18}" for k in KINDS))
    for n in counts:
        per = [(_count(n, kind, REPEAT) - _count(n, kind, 0)) / (HOSTS * REPEAT) for kind in KINDS]
        print(f"  {n:>9,}  " + "  ".join(f"{p:18,.0f}" for p in per), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
