"""The benchmark's statistics: a paired ratio that refuses to claim what noise hides."""

from __future__ import annotations

import random
import statistics

import pytest

from benchmarks.stats import compare, compare_processes


def _noisy(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1e-3 * (1 + 0.3 * rng.random()) for _ in range(n)]


def test_a_known_shift_is_found_with_a_tight_interval() -> None:
    plain = _noisy(2000, 1)
    # Drift shared by each pair (the slow run of the VM) plus 2 % more, plus small noise.
    rng = random.Random(2)
    pinned = [p * 1.02 + rng.gauss(0, 2e-6) for p in plain]
    c = compare(plain, pinned, resamples=300)
    assert c.ci_low <= c.ratio <= c.ci_high
    assert c.ci_low > 1.015
    assert c.ci_high < 1.025
    assert "MISSED" in c.verdict(1.01)
    assert c.verdict(1.03) == "goal ≤ 1.030 met"


def test_no_difference_is_reported_as_noise_not_as_an_effect() -> None:
    plain = _noisy(1000, 3)
    pinned = _noisy(1000, 4)  # the same distribution, unpaired noise
    c = compare(plain, pinned, resamples=300)
    assert c.ci_low <= 1.0 <= c.ci_high
    assert c.verdict(1.01).startswith("no difference measurable")


def test_unpaired_input_is_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        compare([1.0, 2.0], [1.0])


def test_a_tiny_but_tight_difference_is_below_the_method_resolution() -> None:
    plain = _noisy(2000, 5)
    pinned = [p * 0.9987 for p in plain]  # what an A/A run once showed: -0.13 %, tight
    c = compare(plain, pinned, resamples=300)
    assert c.ci_high < 1.0
    assert c.verdict(1.005).startswith("no difference measurable")
    assert "resolution" in c.verdict(1.005)


def _process_groups(offsets: list[float], effect: float) -> list[tuple[list[float], list[float]]]:
    """Each process favours one client by its own offset for its whole life (what fresh
    A/A processes show), with little noise inside the process."""
    groups = []
    for index, offset in enumerate(offsets):
        plain = _noisy(400, 10 + index)
        rng = random.Random(100 + index)
        pinned = [p * (effect + offset) + rng.gauss(0, 1e-6) for p in plain]
        groups.append((plain, pinned))
    return groups


def test_the_interval_over_processes_is_as_wide_as_the_spread_between_them() -> None:
    offsets = [-0.004, 0.003, -0.002, 0.004, 0.0, -0.003]
    groups = _process_groups(offsets, 1.0)
    one = compare(*groups[3], resamples=300)
    assert one.ci_low > 1.003  # one process alone claims an effect that is not there
    c, per = compare_processes(groups, resamples=300)
    assert c.ci_low <= 1.0 <= c.ci_high
    assert c.n == 2400
    # Each process's own ratio, in order: the planted offsets show through.
    assert len(per) == 6
    assert [round(r - 1, 3) for r in per] == offsets
    assert c.ratio == statistics.median(per)
    assert c.verdict(1.005).startswith("no difference measurable")


def test_an_effect_shared_by_every_process_is_found() -> None:
    groups = _process_groups([-0.002, 0.002, -0.001, 0.001, 0.0, 0.0015], 1.02)
    c, _ = compare_processes(groups, resamples=300)
    assert 1.015 < c.ci_low <= c.ratio <= c.ci_high < 1.025
    assert "MISSED" in c.verdict(1.01)


def test_processes_need_samples() -> None:
    with pytest.raises(ValueError, match="at least one"):
        compare_processes([])
    with pytest.raises(ValueError, match="paired"):
        compare_processes([([1.0], [])])
