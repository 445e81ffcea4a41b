"""Medians, percentiles and a paired bootstrap confidence interval for the pinsdk / httpx ratio."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

import attrs


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# Two identical plain clients (python -m benchmarks --aa) differ by up to ~0.15 %, with
# intervals that may exclude 1.00: connection-to-connection effects the pairing cannot
# remove. A ratio closer to 1.00 than this is not reported as an effect.
RESOLUTION = 0.002


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
        if abs(self.ratio - 1.0) < RESOLUTION:
            return (
                f"no difference measurable: {self.ratio:.4f} is within the method's "
                f"resolution (±{RESOLUTION * 100:.1f} %, A/A runs); goal ≤ {goal:.3f} "
                + ("met" if self.ci_high <= goal else "not shown")
            )
        if self.ci_high <= goal:
            return f"goal ≤ {goal:.3f} met"
        if self.ci_low > goal:
            return f"goal ≤ {goal:.3f} MISSED"
        return f"goal ≤ {goal:.3f} not shown (interval reaches above it)"

    def as_dict(self) -> dict[str, float | int]:
        return attrs.asdict(self)


def compare(
    plain: Sequence[float], pinned: Sequence[float], *, resamples: int = 1000
) -> Comparison:
    """The ratio pinsdk / httpx from paired samples, with a bootstrap interval.

    ``plain[i]`` and ``pinned[i]`` were measured next to each other, so their difference
    is free of the drift that both share. The effect is the median of these paired
    differences; the ratio is ``1 + effect / median(plain)``. The interval resamples
    whole pairs, so it reflects the noise of the differences, not of the raw latencies.
    """
    if len(plain) != len(pinned) or not plain:
        raise ValueError("compare needs two equally long, non-empty lists of paired samples")
    diffs = [b - a for a, b in zip(plain, pinned, strict=True)]
    n = len(diffs)
    rng = random.Random(7)  # reproducible intervals for the same samples
    ratios = []
    for _ in range(resamples):
        picks = rng.choices(range(n), k=n)
        effect = statistics.median([diffs[i] for i in picks])
        ratios.append(1 + effect / statistics.median([plain[i] for i in picks]))
    ratios.sort()
    plain_median = statistics.median(plain)
    return Comparison(
        plain_median=plain_median,
        plain_p90=percentile(plain, 90),
        pinned_median=statistics.median(pinned),
        pinned_p90=percentile(pinned, 90),
        ratio=1 + statistics.median(diffs) / plain_median,
        ci_low=ratios[int(0.025 * resamples)],
        ci_high=ratios[int(0.975 * resamples) - 1],
        n=n,
    )
