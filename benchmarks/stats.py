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
    diffs = _paired(plain, pinned)
    ratios = sorted(_replicates(plain, diffs, resamples, random.Random(7)))
    plain_median = statistics.median(plain)
    return Comparison(
        plain_median=plain_median,
        plain_p90=percentile(plain, 90),
        pinned_median=statistics.median(pinned),
        pinned_p90=percentile(pinned, 90),
        ratio=1 + statistics.median(diffs) / plain_median,
        ci_low=ratios[int(0.025 * resamples)],
        ci_high=ratios[int(0.975 * resamples) - 1],
        n=len(diffs),
    )


def _paired(plain: Sequence[float], pinned: Sequence[float]) -> list[float]:
    if len(plain) != len(pinned) or not plain:
        raise ValueError("compare needs two equally long, non-empty lists of paired samples")
    return [b - a for a, b in zip(plain, pinned, strict=True)]


def _ratio(plain: Sequence[float], diffs: Sequence[float]) -> float:
    return 1 + statistics.median(diffs) / statistics.median(plain)


def _replicates(
    plain: Sequence[float], diffs: Sequence[float], resamples: int, rng: random.Random
) -> list[float]:
    """Bootstrap replicates of the paired ratio: whole pairs resampled."""
    n = len(diffs)
    out = []
    for _ in range(resamples):
        picks = rng.choices(range(n), k=n)
        out.append(_ratio([plain[i] for i in picks], [diffs[i] for i in picks]))
    return out


def compare_processes(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]], *, resamples: int = 1000
) -> tuple[Comparison, list[float]]:
    """The ratio pinsdk / httpx from paired samples taken in several fresh processes.

    One process's memory layout can favour one client over the other by a few tenths of
    a percent for its whole life (A/A runs in fresh processes spread from 0.999 to 1.01),
    an effect that pairing inside the process cannot remove and that the interval of
    :func:`compare` does not show. Here each process gives its own paired ratio; the
    figure is their median, and the interval resamples processes first and then the
    pairs of each chosen process, so it is as wide as the spread between processes.
    """
    if not groups:
        raise ValueError("compare_processes needs at least one process's samples")
    rng = random.Random(7)
    per = []
    for plain, pinned in groups:
        diffs = _paired(plain, pinned)
        per.append((_ratio(plain, diffs), _replicates(plain, diffs, resamples, rng)))
    ratios = []
    for _ in range(resamples):
        chosen = rng.choices(per, k=len(per))
        ratios.append(statistics.median(rng.choice(reps) for _, reps in chosen))
    ratios.sort()
    plain_all = [v for plain, _ in groups for v in plain]
    pinned_all = [v for _, pinned in groups for v in pinned]
    comparison = Comparison(
        plain_median=statistics.median(plain_all),
        plain_p90=percentile(plain_all, 90),
        pinned_median=statistics.median(pinned_all),
        pinned_p90=percentile(pinned_all, 90),
        ratio=statistics.median(r for r, _ in per),
        ci_low=ratios[int(0.025 * resamples)],
        ci_high=ratios[int(0.975 * resamples) - 1],
        n=len(plain_all),
    )
    return comparison, [r for r, _ in per]
