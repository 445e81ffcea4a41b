"""``make bench``: every benchmark, a table, a JSON file of raw figures and a PNG plot.

Ratios compare pinsdk with plain httpx measured in the same run, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from . import micro, update
from .requests import ab_run
from .responder import pin_to_cpu
from .stats import Comparison

GOALS = {"fresh": 1.01, "keepalive": 1.005}


def _start_responder() -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    info_file = Path(tempfile.mkdtemp()) / "responder.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.responder", str(info_file)], stdin=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not info_file.exists():  # bounded: the responder starts in well under a second
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the benchmark responder did not start")
        time.sleep(0.05)
    return proc, json.loads(info_file.read_text())


def _machine() -> dict[str, Any]:
    import cryptography
    import httpx

    import pinsdk

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "pinsdk": pinsdk.__version__,
        "httpx": httpx.__version__,
        "cryptography": cryptography.__version__,
        "openssl": __import__("ssl").OPENSSL_VERSION,
    }


def _plot(path: Path, samples: dict[str, tuple[list[float], list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(4.2 * len(samples), 3.6))
    for ax, (title, (plain, pinned)) in zip(axes, samples.items(), strict=True):
        for values, label in ((plain, "httpx"), (pinned, "pinsdk")):
            ms = sorted(v * 1e3 for v in values)
            cut = ms[: int(len(ms) * 0.99)]  # the slowest 1 % would flatten the plot
            ax.plot(cut, [i / len(ms) for i in range(len(cut))], label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("latency per request (ms)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Per-request latency on loopback: plain httpx vs pinsdk (same run)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


async def _run(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    scale = 0.25 if args.quick else 1.0
    out: dict[str, Any] = {"requests": {}, "samples": {}}
    for fresh in (True, False):
        for http2 in (False, True):
            kind = "new connection" if fresh else "keep-alive"
            name = f"{kind}, {'HTTP/2' if http2 else 'HTTP/1.1'}"
            n = int((3000 if fresh else 8000) * scale)
            comparison, plain, pinned, stats = await ab_run(
                info, http2=http2, fresh=fresh, n=n, warmup=max(20, n // 10), aa=args.aa
            )
            expected_checks = n + max(20, n // 10) if fresh else 1
            if not args.aa and stats["handshakes_checked"] < expected_checks:
                raise RuntimeError(f"{name}: pins were not checked on every connection: {stats}")
            goal = GOALS["fresh" if fresh else "keepalive"]
            out["requests"][name] = {
                **comparison.as_dict(),
                "goal": goal,
                "verdict": comparison.verdict(goal),
                "handshakes_checked": stats.get("handshakes_checked"),
            }
            out["samples"][name] = {  # seconds, to 0.1 µs: the clock's useful resolution
                "plain": [round(v, 7) for v in plain],
                "pinned": [round(v, 7) for v in pinned],
            }
    if args.aa:
        return out
    _micro(out)
    out["verify_swap"] = [await update.verify_and_swap(n) for n in (10, 10_000)]
    out["swaps_under_load"] = await update.swaps_under_load(
        info, requests=int(1000 * scale), swaps=int(100 * scale)
    )
    out["memory"] = update.store_memory()
    return out


def _micro_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "Pin check (3-certificate verified chain -> verdict; goals: warm ≤ 2 µs, cold ≤ 40 µs):"
    ]
    lines += [f"  {row['name']:42s} {row['us']:8.2f} µs" for row in results["pin_check"]]
    lines.append("Store lookup (goal ≤ 1 µs at 10,000 domains, flat in the domain count):")
    lines += [f"  {row['name']:42s} {row['us']:8.2f} µs" for row in results["lookup"]]
    return lines


def _micro(results: dict[str, Any]) -> dict[str, Any]:
    results["pin_check"] = [{"name": k, "us": v * 1e6} for k, v in micro.pin_check()]
    results["lookup"] = [{"name": k, "us": v * 1e6} for k, v in micro.lookup()]
    return results


def _table(results: dict[str, Any]) -> str:
    lines = ["Requests (median and p90 per request; ratio = pinsdk / httpx, 95 % interval):"]
    for name, r in results["requests"].items():
        c = Comparison(**{k: r[k] for k in Comparison.__annotations__})
        lines.append(
            f"  {name:27s} httpx {c.plain_median * 1e3:7.3f} / {c.plain_p90 * 1e3:7.3f} ms   "
            f"pinsdk {c.pinned_median * 1e3:7.3f} / {c.pinned_p90 * 1e3:7.3f} ms   "
            f"ratio {c.ratio:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}]  n={c.n}"
        )
        lines.append(f"  {'':27s} -> {r['verdict']}")
    if "pin_check" not in results:  # an A/A run
        return "\n".join(lines)
    lines += _micro_table(results)
    lines.append(
        "Update path: verify + swap of a signed document (goal ≤ 50 ms at 10,000 domains):"
    )
    for row in results["verify_swap"]:
        lines.append(
            f"  {row['domains']:>6,} domains ({row['bytes'] / 1e6:5.2f} MB)  median "
            f"{row['median_ms']:7.2f} ms cold (min {row['min_ms']:.2f}, max {row['max_ms']:.2f}); "
            f"{row['unchanged_median_ms']:.2f} ms for a new version of the same domains"
        )
    s = results["swaps_under_load"]
    lines.append(
        f"Swaps under load: {s['swaps_applied']} swaps during {s['requests']} concurrent requests "
        f"on new connections: {s['failed_with_swaps']} failed (goal 0; without swaps: "
        f"{s['failed_without']})"
    )
    for key in ("without_swaps", "with_swaps"):
        p = s[key]
        lines.append(
            f"  {key.replace('_', ' '):14s} p50 {p['p50_ms']:8.1f} ms  p90 {p['p90_ms']:8.1f} ms  "
            f"p99 {p['p99_ms']:8.1f} ms"
        )
    m = results["memory"]
    lines.append(
        f"Memory: a {m['domains']:,}-domain store holds {m['mb']:.2f} MB as a document builds "
        f"it, {m['realised_mb']:.2f} MB with every entry realised (goal ≤ 5 MB)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the samples")
    parser.add_argument(
        "--aa",
        action="store_true",
        help="A/A check of the method: two plain httpx clients, request benchmarks only",
    )
    parser.add_argument(
        "--micro",
        action="store_true",
        help="the pin check and lookup micro-benchmarks only (seconds; nothing written)",
    )
    parser.add_argument("--json", default=None, help="default benchmarks/results/latest.json")
    parser.add_argument("--plot", default="docs/img/bench-latency.png")
    args = parser.parse_args(argv)
    if args.micro:
        print("\n".join(_micro_table(_micro({}))))
        return 0
    if args.json is None:
        args.json = f"benchmarks/results/{'aa' if args.aa else 'latest'}.json"
    proc, info = _start_responder()
    cpu = pin_to_cpu(0)
    try:
        started = time.perf_counter()
        results = anyio.run(_run, args, info)
        results["seconds"] = time.perf_counter() - started
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    results["machine"] = _machine()
    results["machine"]["client_cpu"] = cpu
    results["command"] = "python -m benchmarks" + "".join(
        f" --{flag}" for flag in ("quick", "aa") if getattr(args, flag)
    )
    print(
        f"pinsdk benchmarks: Python {results['machine']['python']}, "
        f"{results['machine']['cpus']} CPUs, {results['machine']['openssl']}"
    )
    if args.aa:
        print("A/A run: the 'pinsdk' column is a second plain httpx client")
    print(_table(results))
    print(f"({results['seconds']:.0f} s)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    if args.aa:
        print(f"raw figures: {args.json}")
        return 0
    samples = {
        name: (v["plain"], v["pinned"])
        for name, v in results["samples"].items()
        if "HTTP/1.1" in name
    }
    _plot(Path(args.plot), samples)
    print(f"raw figures: {args.json}; plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
