"""Pin sets at scale: lookup, build, verify + swap and memory from 10 to 1,000,000 domains.

Every timing is the minimum of several runs in CPU time of this process
(``time.process_time``, all threads): the figure least disturbed by other load on a shared
machine. Wall-clock medians are kept in the JSON next to them.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric import ed25519

import pinsdk
from pinsdk._core.envelope import parse_payload
from pinsdk._core.timeutil import format_datetime

COUNTS = (10, 1_000, 100_000, 1_000_000)
KINDS = ("exact", "*.", "**.", "include_subdomains", "miss")
SAMPLE = 500  # distinct hosts looked up per kind (fewer where the set has fewer): one working
# set at every count, so the figure shows the cost of the pin set's size, not of the cache
# Beyond this many domains the one-entry-per-object JSON shape is not signed and verified
# (a 1,000,000-domain document of it is 265 MB): host groups are what large sets use.
PLAIN_UP_TO = 100_000
# A lookup's time depends on the process it runs in by up to 2 × (the same code, seed and
# machine: where the interpreter's objects sit in memory decides its cache hits), so each
# count's lookups are timed in this many fresh processes and the median is reported.
LOOKUP_PROCESSES = 5


def _pin(seed: int) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(b"%d" % seed).digest()).decode()


PIN_SETS = [[_pin(2 * k), _pin(2 * k + 1)] for k in range(4)]  # e.g. four CAs, each + backup


def domains_and_hosts(n: int, tag: str = "") -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """``n`` entries: 60 % exact names, 10 % exact with include_subdomains, 20 % ``*.``,
    10 % ``**.``, over four shared pin sets; and hosts that match each kind, or none."""
    domains: list[dict[str, Any]] = []
    hosts: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for i in range(n):
        pins = PIN_SETS[(i // 1000) % 4]
        kind = i % 10
        name = f"api{i}{tag}.svc{i % 97}.example.com"
        if kind < 6:
            domains.append({"host": name, "pins": pins})
            hosts["exact"].append(name)
        elif kind == 6:
            domains.append({"host": name, "pins": pins, "include_subdomains": True})
            hosts["include_subdomains"].append(f"x.{name}")
        elif kind < 9:
            domains.append({"host": f"*.tenant{i}{tag}.example.net", "pins": pins})
            hosts["*."].append(f"eu.tenant{i}{tag}.example.net")
        else:
            domains.append({"host": f"**.cdn{i}{tag}.example.org", "pins": pins})
            hosts["**."].append(f"a.b.cdn{i}{tag}.example.org")
    hosts["miss"] = [f"unpinned{i}.example.io" for i in range(max(1, n // 4))]
    for name in KINDS:  # the smallest sets have no host of some kinds: borrow a miss
        hosts[name] = hosts[name] or hosts["miss"]
    return domains, hosts


def grouped(domains: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same entries as host groups (what ``PinPolicy.to_dict(host_groups=True)`` writes)."""
    shape = pinsdk.PinPolicy.from_dict({"domains": domains}).to_dict(host_groups=True)
    return shape["domains"], shape.get("host_groups", [])


def _payload(version: int, domains: list[Any], groups: list[Any] | None) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    body: dict[str, Any] = {
        "spec_version": 1,
        "version": version,
        "issued_at": format_datetime(now - timedelta(minutes=1)),
        "expires": format_datetime(now + timedelta(days=1)),
        "domains": domains,
    }
    if groups:
        body["host_groups"] = groups
    return body


def _limits(n: int) -> pinsdk.UpdateLimits:
    return pinsdk.UpdateLimits(max_domains=max(n, 1), max_size=max(n * 700, 1 << 20))


def _best(fn: Callable[[], object], repeat: int, warm: bool = False) -> tuple[float, float]:
    """(minimum CPU seconds, median wall seconds) of ``repeat`` calls, GC paused in each
    after a full collection; with ``warm``, each timed call follows an untimed one."""
    cpu, wall = [], []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            if warm:
                fn()
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        finally:
            gc.enable()
    return min(cpu), statistics.median(wall)


class _Recorder:
    """Stands in for a host table's index while one lookup runs: notes each key probed."""

    def __init__(self, index: dict[str, Any]) -> None:
        self.index = index
        self.keys: list[str] = []

    def get(self, key: str) -> Any:
        self.keys.append(key)
        return self.index.get(key)

    def __setitem__(self, key: str, value: Any) -> None:  # a first lookup builds entries
        self.index[key] = value


def probes_of(policy: pinsdk.PinPolicy, host: str) -> list[str]:
    """The keys one ``policy.lookup(host)`` probes its index with, in order (the very
    string objects, hashes kept), recorded from the lookup itself."""
    table = policy._table
    index = table._index
    recorder = _Recorder(index)
    table._index = recorder  # type: ignore[assignment]
    try:
        policy.lookup(host)
    finally:
        table._index = index
    return recorder.keys


PARTS = ("lookup", "probes", "probe_count", "lookup_cold", "probes_cold")


def lookups(policy: pinsdk.PinPolicy, hosts: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """µs per ``PinPolicy.lookup`` of each kind (a sample of SAMPLE hosts, each looked up
    once before: the entries a lookup needs are built on first use); and, as the floor a
    dict of this size sets, µs for the same index probes made bare (``dict.get`` of the
    same keys, one Python call per host), and how many probes a lookup makes.

    ``lookup`` and ``probes`` are the working set's steady state: five passes over the
    sample timed after an untimed one. ``lookup_cold`` and ``probes_cold`` are one pass
    right after a full collection, which walks every object of the process (at a million
    domains, the policy's 100 MB and this benchmark's own host lists) and so evicts the
    working set from the CPU's caches: what a lookup costs from memory."""
    rng = random.Random(7)
    out: dict[str, dict[str, float]] = {part: {} for part in PARTS}
    for kind in KINDS:
        sample = rng.sample(hosts[kind], min(SAMPLE, len(hosts[kind])))
        sample = (sample * (SAMPLE // len(sample) + 1))[:SAMPLE]
        lookup = policy.lookup
        for host in sample:
            lookup(host)
        keys = [probes_of(policy, host) for host in sample]
        get = policy._table._index.get

        def run_once(sample: list[str] = sample, lookup: Any = lookup) -> None:
            for host in sample:
                lookup(host)

        def probe(these: list[str], get: Any = get) -> None:
            for key in these:
                get(key)

        def bare_once(keys: list[list[str]] = keys, probe: Any = probe) -> None:
            for these in keys:
                probe(these)

        def run(once: Any = run_once) -> None:
            for _ in range(5):
                once()

        def bare(once: Any = bare_once) -> None:
            for _ in range(5):
                once()

        out["lookup"][kind] = _best(run, 7, warm=True)[0] / (5 * len(sample)) * 1e6
        out["probes"][kind] = _best(bare, 7, warm=True)[0] / (5 * len(sample)) * 1e6
        out["lookup_cold"][kind] = _best(run_once, 7)[0] / len(sample) * 1e6
        out["probes_cold"][kind] = _best(bare_once, 7)[0] / len(sample) * 1e6
        out["probe_count"][kind] = sum(map(len, keys)) / len(keys)
    return out


def lookups_in_processes(
    n: int, processes: int
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """The medians over ``processes`` fresh processes of :func:`lookups` at ``n`` domains
    (each builds the same policy), by part (:data:`PARTS`) and kind; and every process's
    figures."""
    runs = []
    for _ in range(processes):
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--lookups", str(n)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        runs.append(json.loads(child.stdout))
    median = {
        part: {kind: statistics.median(run[part][kind] for run in runs) for kind in KINDS}
        for part in PARTS
    }
    return median, runs


def memory(payload: bytes, n: int) -> dict[str, float | None]:
    """Bytes a policy holds once a document's payload is parsed (host names included),
    before any lookup; and, up to 100,000 domains, with every entry built."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        policy = parse_payload(payload, _limits(n))["policy"]
        gc.collect()
        built = tracemalloc.get_traced_memory()[0] - before
        realised = None
        if n <= 100_000:
            assert len(policy.domains) == n
            gc.collect()
            realised = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_domain": built / n,
        "realised_bytes_per_domain": None if realised is None else realised / n,
    }


async def _verify_swap(
    document: bytes, n: int, key: ed25519.Ed25519PrivateKey, repeat: int
) -> dict[str, float]:
    """DynamicPins.apply_document (verify, build, swap) of a signed document, and how long
    the event loop went without running while it did (readers never wait on a lock; the
    judging thread holds the GIL in long C calls, such as parsing the JSON)."""
    cpu, wall, lag = [], [], []
    for _ in range(repeat):
        pins = pinsdk.DynamicPins(
            "https://127.0.0.1/pins.json",
            [key.public_key()],
            auto_refresh=False,
            limits=_limits(n),
        )
        done = anyio.Event()
        worst = 0.0

        async def ticker(done: anyio.Event = done) -> None:
            nonlocal worst
            last = time.perf_counter()
            while not done.is_set():
                await anyio.sleep(0.001)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now

        gc.collect()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            c, w = time.process_time(), time.perf_counter()
            result = await pins.apply_document(document)
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
            done.set()
        assert result.status is pinsdk.UpdateStatus.UPDATED, result.reason
        lag.append(worst)
        del pins
    return {
        "cpu_ms": min(cpu) * 1e3,
        "wall_ms": statistics.median(wall) * 1e3,
        "loop_lag_ms": max(lag) * 1e3,
    }


def one_count(
    n: int, say: Callable[[str], None], processes: int = LOOKUP_PROCESSES
) -> dict[str, Any]:
    key = ed25519.Ed25519PrivateKey.generate()
    domains, _ = domains_and_hosts(n)
    rest, groups = grouped(domains)
    repeat = 3 if n >= 1_000_000 else 5
    row: dict[str, Any] = {"domains": n}
    say(f"  {n:>9,} domains: build")
    row["build_ms"] = (
        _best(lambda: pinsdk.PinPolicy.from_dict({"domains": domains}), repeat)[0] * 1e3
    )
    row["build_groups_ms"] = (
        _best(lambda: pinsdk.PinPolicy.from_dict({"domains": rest, "host_groups": groups}), repeat)[
            0
        ]
        * 1e3
    )
    say(f"  {n:>9,} domains: sign and verify + swap (host groups)")
    limits = _limits(n)
    doc = pinsdk.sign_envelope(_payload(1, rest, groups), key, limits=limits)
    row["bytes_groups"] = len(doc)
    row["verify_swap_groups"] = anyio.run(_verify_swap, doc, n, key, repeat)
    payload = base64.b64decode(json.loads(doc)["payload"])
    del doc
    if n <= PLAIN_UP_TO:
        say(f"  {n:>9,} domains: sign and verify + swap (one object per entry)")
        plain = pinsdk.sign_envelope(_payload(1, domains, None), key, limits=limits)
        row["bytes_plain"] = len(plain)
        row["verify_swap_plain"] = anyio.run(_verify_swap, plain, n, key, repeat)
        del plain
    say(f"  {n:>9,} domains: memory (tracemalloc)")
    row["memory"] = memory(payload, n)
    del payload
    say(f"  {n:>9,} domains: lookups, in {processes} processes")
    median, row["lookup_runs"] = lookups_in_processes(n, processes)
    row["lookup_us"] = median["lookup"]
    row["lookup_probes_us"] = median["probes"]
    row["lookup_probe_count"] = median["probe_count"]
    row["lookup_cold_us"] = median["lookup_cold"]
    row["lookup_probes_cold_us"] = median["probes_cold"]
    return row


def run(
    counts: tuple[int, ...], say: Callable[[str], None], processes: int = LOOKUP_PROCESSES
) -> list[dict[str, Any]]:
    rows = []
    for n in counts:
        started = time.perf_counter()
        rows.append(one_count(n, say, processes))
        say(f"  {n:>9,} domains done in {time.perf_counter() - started:.0f} s")
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "Scale (CPU time, minimum of several runs; lookups: µs per PinPolicy.lookup over "
        f"{SAMPLE:,} hosts of each kind, median of fresh processes):",
        f"  {'domains':>9}  " + "  ".join(f"{k:>8}" for k in KINDS) + "   build   groups"
        "  verify+swap (groups / plain)   bytes/domain  loop lag",
    ]
    for r in rows:
        plain = r.get("verify_swap_plain", {}).get("cpu_ms")
        lines.append(
            f"  {r['domains']:>9,}  "
            + "  ".join(f"{r['lookup_us'][k]:8.2f}" for k in KINDS)
            + f" {r['build_ms']:7.0f} {r['build_groups_ms']:8.0f}"
            + f"  {r['verify_swap_groups']['cpu_ms']:9.1f} / "
            + (f"{plain:7.1f} ms" if plain is not None else "      - ms")
            + f"   {r['memory']['bytes_per_domain']:12.0f}"
            + f"  {r['verify_swap_groups']['loop_lag_ms']:6.1f} ms"
        )
    lines += _by_kind(
        rows,
        "Lookups against their floor: µs of the same index probes made bare (dict.get of "
        "the same keys), and probes per lookup:",
        "lookup_probes_us",
        lambda r, k: (
            f"{r['lookup_probes_us'][k]:6.2f} ({r['lookup_probe_count'][k]:.1f}) "
            f"{r['lookup_us'][k] / r['lookup_probes_us'][k]:4.1f}x"
        ),
    )
    if any("lookup_cold_us" in r for r in rows):
        lines += _by_kind(
            rows,
            "Lookups from memory: µs per lookup in one pass right after a full collection "
            "(which evicts the caches), and its floor, the same probes made bare:",
            "lookup_cold_us",
            lambda r, k: f"{r['lookup_cold_us'][k]:8.2f} / {r['lookup_probes_cold_us'][k]:5.2f}   ",
        )
    return lines


def _by_kind(
    rows: list[dict[str, Any]], title: str, key: str, cell: Callable[[dict[str, Any], str], str]
) -> list[str]:
    """A title, a header of the kinds, and a line of cells for each row that has ``key``."""
    out = [title, f"  {'domains':>9}  " + "  ".join(f"{k:>18}" for k in KINDS)]
    for r in rows:
        if key in r:
            out.append(f"  {r['domains']:>9,}  " + "  ".join(cell(r, k) for k in KINDS))
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["domains"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    ax = axes[0]
    for kind in KINDS:
        ax.plot(counts, [r["lookup_us"][kind] for r in rows], marker="o", label=kind)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8, label="goal")
    ax.set_title("lookup (µs)")
    ax = axes[1]
    ax.plot(counts, [r["build_ms"] for r in rows], marker="o", label="entries")
    ax.plot(counts, [r["build_groups_ms"] for r in rows], marker="o", label="host groups")
    ax.set_title("build a policy from JSON (ms)")
    ax.set_yscale("log")
    ax = axes[2]
    ax.plot(
        counts, [r["verify_swap_groups"]["cpu_ms"] for r in rows], marker="o", label="host groups"
    )
    plain = [
        (r["domains"], r["verify_swap_plain"]["cpu_ms"]) for r in rows if "verify_swap_plain" in r
    ]
    ax.plot([p[0] for p in plain], [p[1] for p in plain], marker="o", label="entries")
    ax.plot([100_000, 1_000_000], [250, 2500], "k+", markersize=12, label="goal")
    ax.set_title("verify + swap a signed document (ms)")
    ax.set_yscale("log")
    ax = axes[3]
    ax.plot(counts, [r["memory"]["bytes_per_domain"] for r in rows], marker="o", label="as built")
    ax.axhline(120, color="grey", linestyle="--", linewidth=0.8, label="goal")
    ax.set_title("memory (bytes per domain)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("domains")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("pinsdk at scale (CPU time, minimum of runs)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _lookup_child(n: int) -> None:
    """``python -m benchmarks.scale --lookups N``: print :func:`lookups` at ``n`` domains
    as JSON (one of the processes of :func:`lookups_in_processes`)."""
    domains, hosts = domains_and_hosts(n)
    rest, groups = grouped(domains)
    del domains
    policy = pinsdk.PinPolicy.from_dict({"domains": rest, "host_groups": groups})
    print(json.dumps(lookups(policy, hosts)))


if __name__ == "__main__":
    if sys.argv[1:2] != ["--lookups"] or len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.scale --lookups N")
    _lookup_child(int(sys.argv[2]))
