"""The benchmark's statistics: a paired ratio that refuses to claim what noise hides."""

from __future__ import annotations

import random

import pytest

from benchmarks.stats import compare


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
