"""The instruction counts of make bench: one count per memory layout, the median reported."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from benchmarks import instructions

# Per-request counts by (layout pad, client kind), shaped like the ones seen on 2026-12-03:
# each layout moves both clients, and pinsdk's extra work differs from layout to layout.
_PER_REQUEST = {
    (1, "httpx"): 2_293_896.0,
    (1, "pinsdk"): 2_295_460.0,
    (64, "httpx"): 2_291_095.0,
    (64, "pinsdk"): 2_296_767.0,
    (700, "httpx"): 2_293_491.0,
    (700, "pinsdk"): 2_294_320.0,
    (2900, "httpx"): 2_295_110.0,
    (2900, "pinsdk"): 2_296_634.0,
    (5100, "httpx"): 2_295_069.0,
    (5100, "pinsdk"): 2_293_618.0,
}
_STARTUP = 400_000_000.0


def _fake_valgrind(calls: list[tuple[int, str, int]]) -> Any:
    def run(child_args: list[str], pad: int = 1) -> int:
        assert child_args[0] == "--request-child"
        kind, requests = child_args[1], int(child_args[3])
        calls.append((pad, kind, requests))
        return round(_STARTUP + pad * 1000 + requests * _PER_REQUEST[(pad, kind)])

    return run


def test_the_added_work_is_the_median_of_each_layouts_own_difference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, str, int]] = []
    monkeypatch.setattr(instructions, "_valgrind", _fake_valgrind(calls))
    got = instructions.per_request("info.json", fresh=False, requests=60, layouts=5)
    # Each layout's pinned minus unpinned: 1,564, 5,672, 829, 1,524, -1,451.
    assert got["added"] == pytest.approx(1_524.0, abs=1)
    # Not the difference of the two medians (2,295,460 - 2,293,896 = 1,564).
    assert got["unpinned"] == pytest.approx(2_293_896.0, abs=1)
    assert got["pinned"] == pytest.approx(got["unpinned"] + got["added"])
    assert [row["pad"] for row in got["layouts"]] == list(instructions.LAYOUT_PADS)
    assert got["layouts"][1]["pinned"] - got["layouts"][1]["unpinned"] == pytest.approx(5_672)
    # Every layout counts both clients with none and with the requests: 5 x 2 x 2 runs.
    assert sorted(calls) == sorted(
        (pad, kind, m)
        for pad in instructions.LAYOUT_PADS
        for kind in ("httpx", "pinsdk")
        for m in (0, 60)
    )


def test_one_layout_is_the_plain_count(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str, int]] = []
    monkeypatch.setattr(instructions, "_valgrind", _fake_valgrind(calls))
    got = instructions.per_request("info.json", fresh=True, requests=20)
    assert got["unpinned"] == pytest.approx(_PER_REQUEST[(1, "httpx")], abs=1)
    assert got["pinned"] == pytest.approx(_PER_REQUEST[(1, "pinsdk")], abs=1)
    assert {pad for pad, _, _ in calls} == {1}


def test_the_layout_is_set_by_the_length_of_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, str]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(kwargs["env"])
        return subprocess.CompletedProcess(args, 0, "", "==1== Collected : 12345\n")

    monkeypatch.setattr(instructions.subprocess, "run", run)
    assert instructions._valgrind(["--child", "10", "exact", "1"], pad=700) == 12345
    assert instructions._valgrind(["--child", "10", "exact", "1"]) == 12345
    assert [len(env["PINSDK_BENCH_LAYOUT"]) for env in seen] == [700, 1]
    assert all(env["PYTHONHASHSEED"] == "0" for env in seen)
