"""Medians, percentiles and a bootstrap confidence interval for a ratio of medians."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

import attrs


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@attrs.frozen
class Comparison:
    """Pinned against plain, measured interleaved in one run."""

    plain_median: float
    plain_p90: float
    pinned_median: float
    pinned_p90: float
    ratio: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def noise(self) -> float:
        """Half-width of the 95 % interval: what this run can resolve."""
        return (self.ci_high - self.ci_low) / 2

    def verdict(self, goal: float) -> str:
        if self.ci_low <= 1.0 <= self.ci_high:
            return (
                f"no difference measurable: the effect is below this run's noise "
                f"(±{self.noise * 100:.1f} %); goal ≤ {goal:.3f} "
                + ("met" if self.ci_high <= goal else "not shown at this noise level")
            )
        if self.ci_high <= goal:
            return f"goal ≤ {goal:.3f} met"
        if self.ci_low > goal:
            return f"goal ≤ {goal:.3f} MISSED"
        return f"goal ≤ {goal:.3f} not shown (interval reaches above it)"

    def as_dict(self) -> dict[str, float | int]:
        return attrs.asdict(self)


def compare(
    plain: Sequence[float], pinned: Sequence[float], *, resamples: int = 2000
) -> Comparison:
    """Ratio of the medians, with a bootstrap interval (each arm resampled on its own)."""
    rng = random.Random(7)  # reproducible intervals for the same samples
    ratios = []
    for _ in range(resamples):
        a = statistics.median(rng.choices(plain, k=len(plain)))
        b = statistics.median(rng.choices(pinned, k=len(pinned)))
        ratios.append(b / a)
    ratios.sort()
    return Comparison(
        plain_median=statistics.median(plain),
        plain_p90=percentile(plain, 90),
        pinned_median=statistics.median(pinned),
        pinned_p90=percentile(pinned, 90),
        ratio=statistics.median(pinned) / statistics.median(plain),
        ci_low=ratios[int(0.025 * resamples)],
        ci_high=ratios[int(0.975 * resamples) - 1],
        n=len(plain),
    )
