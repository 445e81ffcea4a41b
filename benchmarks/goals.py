"""The goals ``make bench`` checks: every figure is judged against its goal, and a missed
goal makes the run fail (``--no-fail`` reports it and exits 0)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .stats import Comparison

MET = "met"
MISSED = "MISSED"
# A ratio whose interval straddles its goal: this run cannot tell (noise), which is
# reported but does not fail the run; a figure without an interval is met or missed.
UNRESOLVED = "not resolved"


@attrs.frozen
class Judged:
    """One figure against its goal."""

    name: str
    measured: str  # the figure as printed, with its unit or interval
    goal: str
    verdict: str  # MET, MISSED or UNRESOLVED
    note: str = ""

    @property
    def missed(self) -> bool:
        return self.verdict == MISSED

    def line(self) -> str:
        note = f"  ({self.note})" if self.note else ""
        return f"  [{self.verdict:>12s}] {self.name}: {self.measured}; goal {self.goal}{note}"


def at_most(name: str, value: float, limit: float, unit: str, note: str = "") -> Judged:
    """A figure (a median, a count, bytes) whose goal is an upper bound."""
    verdict = MET if value <= limit else MISSED
    return Judged(name, f"{value:,.3g} {unit}", f"≤ {limit:,.3g} {unit}", verdict, note)


def ratio(name: str, comparison: Comparison, limit: float, note: str = "") -> Judged:
    """A paired ratio with its 95 % interval: met when the whole interval is at or below
    the goal, missed when the whole interval is above it, else not resolved."""
    c = comparison
    if c.ci_high <= limit:
        verdict = MET
    elif c.ci_low > limit:
        verdict = MISSED
    else:
        verdict = UNRESOLVED
    return Judged(name, _shown(c), f"≤ {limit:.3f}", verdict, note)


def ratio_or_bound(
    name: str, latency: Comparison, bound: Comparison | None, limit: float
) -> Judged:
    """A latency ratio judged as :func:`ratio`; when its interval straddles the goal, a
    ratio known to be at least as large (``bound``: the client's CPU time per request,
    where all the added work is client CPU) settles it if its whole interval is at or
    below the goal. A latency interval wholly above the goal is missed either way."""
    bounds = [] if bound is None else [("the client CPU ratio", bound)]
    return settled(name, latency, bounds, limit, why="which bounds the latency ratio")


def settled(
    name: str,
    latency: Comparison,
    measures: list[tuple[str, Comparison]],
    limit: float,
    *,
    why: str,
) -> Judged:
    """A latency ratio judged as :func:`ratio`; when its interval straddles the goal (the
    method's noise hides the effect), it is met if **every** one of ``measures`` of the
    added work itself (labelled ratios) is at or below the goal over its whole interval.
    A latency interval wholly above the goal is missed whatever the measures say."""
    judged = ratio(name, latency, limit)
    if not measures or judged.verdict != UNRESOLVED:
        return judged
    if any(m.ci_high > limit for _, m in measures):
        return judged
    shown = "; ".join(f"{label} {_shown(m)}" for label, m in measures)
    return attrs.evolve(judged, verdict=MET, note=f"by {shown}, {why}")


def _shown(c: Comparison) -> str:
    if c.ci_low == c.ci_high:
        return f"{c.ratio:.4f}"
    return f"{c.ratio:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}]"


def exact(value: float) -> Comparison:
    """A ratio with no interval: counted (instructions under callgrind), or derived from a
    micro-benchmark's median."""
    return Comparison(1.0, 1.0, value, value, value, value, value, 1)


def flat(name: str, values: dict[int, float], factor: float, unit: str) -> Judged:
    """Flat in the count: the largest figure at most ``factor`` times the smallest."""
    low, high = min(values.values()), max(values.values())
    spread = high / low if low > 0 else float("inf")
    measured = ", ".join(f"{v:.3g} {unit} at {n:,}" for n, v in sorted(values.items()))
    verdict = MET if spread <= factor else MISSED
    return Judged(name, measured, f"largest ≤ {factor:g} × smallest ({spread:.2f} ×)", verdict)


def linear(name: str, values: dict[int, float], factor: float, unit: str) -> Judged:
    """Linear in the count: the cost per item at the largest count is at most ``factor``
    times that at the smallest count measured (from 10,000 up, where fixed costs fade)."""
    per = {n: v / n for n, v in values.items() if n >= 10_000}
    if len(per) < 2:
        return Judged(name, "too few counts measured", f"per item ≤ {factor:g} ×", UNRESOLVED)
    small, large = per[min(per)], per[max(per)]
    growth = large / small
    measured = ", ".join(f"{v:.3g} {unit} at {n:,}" for n, v in sorted(values.items()))
    verdict = MET if growth <= factor else MISSED
    return Judged(name, measured, f"cost per item grows ≤ {factor:g} × ({growth:.2f} ×)", verdict)


def summary(judged: Iterable[Judged]) -> tuple[list[str], list[Judged]]:
    """The report's lines (every goal) and the missed goals."""
    rows = list(judged)
    lines = ["Goals:"] + [j.line() for j in rows]
    missed = [j for j in rows if j.missed]
    unresolved = [j for j in rows if j.verdict == UNRESOLVED]
    if missed:
        lines.append(f"{len(missed)} goal(s) MISSED: " + "; ".join(j.name for j in missed))
    else:
        lines.append("every goal met" + (" or not resolved by this run" if unresolved else ""))
    if unresolved:
        lines.append(
            f"{len(unresolved)} not resolved (the interval straddles the goal: noise; run again "
            "on a quieter machine): " + "; ".join(j.name for j in unresolved)
        )
    return lines, missed


def exit_status(missed: list[Judged], no_fail: bool) -> int:
    """1 when a goal was missed (unless ``--no-fail``), else 0."""
    return 1 if missed and not no_fail else 0
