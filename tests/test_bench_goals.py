"""make bench judges every figure against its goal and fails when one is missed."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import goals
from benchmarks.__main__ import judge, main
from benchmarks.stats import Comparison


def _ratio(low: float, mid: float, high: float) -> Comparison:
    return Comparison(1e-3, 1e-3, mid * 1e-3, mid * 1e-3, mid, low, high, 1000)


def test_a_ratio_is_met_missed_or_not_resolved_by_its_interval() -> None:
    assert goals.ratio("r", _ratio(0.998, 1.001, 1.004), 1.005).verdict == goals.MET
    assert goals.ratio("r", _ratio(1.006, 1.008, 1.010), 1.005).verdict == goals.MISSED
    assert goals.ratio("r", _ratio(1.001, 1.004, 1.009), 1.005).verdict == goals.UNRESOLVED


def test_a_straddling_latency_ratio_is_settled_by_its_cpu_bound_only_below_the_goal() -> None:
    straddling = _ratio(0.995, 1.004, 1.013)
    judged = goals.ratio_or_bound("r", straddling, _ratio(1.002, 1.005, 1.008), 1.01)
    assert judged.verdict == goals.MET
    assert "the client CPU ratio 1.0050 [1.0020, 1.0080]" in judged.note
    assert goals.ratio_or_bound("r", straddling, _ratio(1.004, 1.008, 1.012), 1.01).verdict == (
        goals.UNRESOLVED
    )
    assert goals.ratio_or_bound("r", straddling, None, 1.01).verdict == goals.UNRESOLVED
    # The bound never overrides what the latency itself shows.
    above = _ratio(1.011, 1.02, 1.03)
    assert goals.ratio_or_bound("r", above, _ratio(1.0, 1.001, 1.002), 1.01).missed


def test_bounds_flatness_and_linearity() -> None:
    assert goals.at_most("x", 0.9, 1.0, "µs").verdict == goals.MET
    assert goals.at_most("x", 1.1, 1.0, "µs").missed
    assert goals.at_most("failures", 0, 0, "failures").verdict == goals.MET
    assert goals.flat("f", {10: 0.5, 1000: 0.6, 10**6: 0.9}, 2.0, "µs").verdict == goals.MET
    assert goals.flat("f", {10: 0.4, 10**6: 0.9}, 2.0, "µs").missed
    # Per item: 1 µs at 100k, 1.2 µs at 1M is linear enough; 2 µs is not.
    assert goals.linear("l", {10: 5.0, 10**5: 100.0, 10**6: 1200.0}, 1.5, "ms").verdict == "met"
    assert goals.linear("l", {10**5: 100.0, 10**6: 2000.0}, 1.5, "ms").missed
    assert goals.linear("l", {10: 1.0, 1000: 2.0}, 1.5, "ms").verdict == goals.UNRESOLVED


def test_the_summary_names_every_missed_goal_and_the_exit_status_follows() -> None:
    judged = [
        goals.at_most("fast enough", 1.0, 2.0, "µs"),
        goals.at_most("too slow", 3.0, 2.0, "µs"),
        goals.at_most("too big", 300, 120, "B/domain"),
        goals.ratio("noisy", _ratio(0.99, 1.0, 1.02), 1.01),
    ]
    lines, missed = goals.summary(judged)
    text = "\n".join(lines)
    assert [j.name for j in missed] == ["too slow", "too big"]
    assert "2 goal(s) MISSED: too slow; too big" in text
    assert "[      MISSED] too slow" in text
    assert "1 not resolved" in text
    assert "noisy" in text
    assert goals.exit_status(missed, no_fail=False) == 1
    assert goals.exit_status(missed, no_fail=True) == 0
    lines, missed = goals.summary(judged[:1])
    assert missed == []
    assert goals.exit_status(missed, no_fail=False) == 0
    assert lines[-1] == "every goal met"


def _scale_row(n: int, lookup: float, verify_ms: float, memory: float) -> dict[str, Any]:
    kinds = ("exact", "*.", "**.", "include_subdomains", "miss")
    return {  # the shape of benchmarks.scale.one_count's rows
        "domains": n,
        "lookup_us": dict.fromkeys(kinds, lookup),
        "build_ms": verify_ms,
        "build_groups_ms": verify_ms,
        "verify_swap_groups": {"cpu_ms": verify_ms, "wall_ms": verify_ms, "loop_lag_ms": 1.0},
        "memory": {"bytes_per_domain": memory},
    }


def test_a_full_run_is_judged_on_every_goal_of_the_issue() -> None:
    results: dict[str, Any] = {
        "scale": [
            _scale_row(10, 0.5, 1.0, 300.0),
            _scale_row(1_000, 0.5, 2.0, 150.0),
            _scale_row(100_000, 0.6, 150.0, 110.0),
            _scale_row(1_000_000, 1.5, 3000.0, 130.0),
        ],
        "swaps_under_load": {"failed_with_swaps": 0},
    }
    results["requests"] = {
        "new connection, HTTP/1.1": {
            k: getattr(_ratio(1.001, 1.003, 1.004), k) for k in Comparison.__annotations__
        }
    }
    row = {k: getattr(_ratio(0.995, 1.004, 1.013), k) for k in Comparison.__annotations__}
    cpu = {k: getattr(_ratio(1.002, 1.005, 1.008), k) for k in Comparison.__annotations__}
    results["clients"] = {
        "pinsdk.Client (sync)": {**row, "cpu": cpu},
        "requests, pinned context": row,  # no CPU figure: stays unresolved
        "aiohttp, Fingerprint (no chain verification)": row,  # for comparison, not judged
    }
    judged = {j.name: j for j in judge(results)}
    assert judged["pinsdk.Client (sync), new connection"].verdict == goals.MET
    assert judged["requests, pinned context, new connection"].verdict == goals.UNRESOLVED
    assert not any(name.startswith("aiohttp, Fingerprint") for name in judged)
    assert judged["per request, new connection, HTTP/1.1"].verdict == goals.MET
    assert judged["lookup, exact, 100,000 domains"].verdict == goals.MET
    assert judged["lookup, exact, 1,000,000 domains"].missed
    assert judged["verify + swap, 100,000 domains (host groups), CPU"].verdict == goals.MET
    assert judged["verify + swap, 1,000,000 domains (host groups), CPU"].missed
    assert judged["memory once built, 100,000 domains"].verdict == goals.MET
    assert judged["memory once built, 1,000,000 domains"].missed
    assert judged["lookup, miss, flat in the count"].missed  # 0.5 -> 1.5 µs
    assert judged["verify + swap grows linearly (host groups)"].missed  # 1.5 -> 3 µs a domain
    assert judged["requests failed during swaps under load"].verdict == goals.MET


def test_a_latency_ratio_that_noise_hides_is_settled_by_measures_of_the_added_work() -> None:
    def row(low: float, mid: float, high: float) -> dict[str, Any]:
        return {k: getattr(_ratio(low, mid, high), k) for k in Comparison.__annotations__}

    results: dict[str, Any] = {  # plain medians of 1 ms
        "requests": {
            "new connection, HTTP/1.1": row(0.997, 1.003, 1.008),  # straddles 1.005
            "new connection, HTTP/2": row(1.006, 1.008, 1.010),  # wholly above: missed
            "keep-alive, HTTP/1.1": row(0.995, 1.001, 1.006),  # straddles 1.002
        },
        "instructions": {
            "new connection": {"unpinned": 12_000_000.0, "pinned": 12_024_000.0},  # 1.002
            "keep-alive": {"unpinned": 1_000_000.0, "pinned": 1_003_000.0},  # 1.003 > 1.002
            "aiohttp, pinned context": {"unpinned": 9_000_000.0, "pinned": 9_027_000.0},
        },
        "in_handshake": [{"name": "pin check in a real handshake (known host)", "us": 3.0}],
        "request_path": [{"name": "added per request, static PinPolicy", "us": 0.3}],
        "clients": {  # straddles 1.01, and no CPU figure
            "aiohttp, pinned context": row(1.003, 1.007, 1.012),
            "requests, pinned context": row(1.003, 1.007, 1.012),  # nothing counted
        },
    }
    judged = {j.name: j for j in judge(results)}
    aiohttp = judged["aiohttp, pinned context, new connection"]
    assert aiohttp.verdict == goals.MET
    assert "the client instruction ratio 1.0030;" in aiohttp.note
    assert (
        judged["aiohttp, pinned context, new connection, client instructions (callgrind)"].verdict
        == goals.MET
    )
    assert judged["requests, pinned context, new connection"].verdict == goals.UNRESOLVED
    fresh = judged["per request, new connection, HTTP/1.1"]
    assert fresh.verdict == goals.MET
    assert "the client instruction ratio 1.0020;" in fresh.note
    assert "the check's time in real handshakes over the plain median 1.0030" in fresh.note
    assert judged["per request, new connection, HTTP/2"].missed  # measures never override it
    assert judged["per request, keep-alive, HTTP/1.1"].verdict == goals.UNRESOLVED
    counted = judged["per request, keep-alive, HTTP/1.1, client instructions (callgrind)"]
    assert counted.missed
    assert counted.measured == "1.0030"
    assert (
        judged["per request, new connection, HTTP/1.1, client instructions (callgrind)"].verdict
        == goals.MET
    )
    # Every measure must be at or below the goal: a check of 10 µs is 1.0100 of 1 ms.
    results["in_handshake"][0]["us"] = 10.0
    judged = {j.name: j for j in judge(results)}
    assert judged["per request, new connection, HTTP/1.1"].verdict == goals.UNRESOLVED
    # Without valgrind there are no counts: the latency verdicts stand alone.
    results["in_handshake"][0]["us"] = 3.0
    del results["instructions"]
    judged = {j.name: j for j in judge(results)}
    assert judged["per request, new connection, HTTP/1.1"].verdict == goals.UNRESOLVED


def test_a_missed_goal_fails_the_run_unless_no_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command itself: its exit status, and nothing written outside --out."""
    from benchmarks import scale

    monkeypatch.setattr(scale, "COUNTS", (10, 20, 30))
    monkeypatch.setattr(
        scale,
        "one_count",
        lambda n, say, processes: _scale_row(n, 0.5 if n == 10 else 5.0, 1.0, 100.0),
    )
    out = tmp_path / "out"
    assert main(["--scale", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "MISSED] lookup, exact, flat in the count" in text
    assert main(["--scale", "--out", str(out), "--no-fail"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bench-scale.png", "scale.json"]
