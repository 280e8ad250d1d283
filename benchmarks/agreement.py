"""How far talbench's RTT figures are from a reference tool's on the same path, against issue 14's
goals, with the sampling's own uncertainty: a p99 from a few hundred samples of a path whose
tail is set by a handful of host stalls moves by more than the goal between two flows of the
same wire, so each p99 difference carries a bootstrap range (resampling each tool's samples, the
way `talbench compare` does: bench/compare/stats.py).

Used by bench_rtt.py (a sibling: run as a file, its directory is on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from talbench.bench.compare.stats import Distribution, Percentile, bootstrap_difference
from talbench.bench.stats import percentile

# issue 14, done-when 1: within these of ping (ms), p50 and p99, per kind of path
GOALS_MS = {False: (0.05, 0.2), True: (0.1, 0.2)}  # keyed by "through the delay line"
RESAMPLES = 1000


@dataclass(frozen=True)
class Agreement:
    p50_apart: float
    p99_apart: float
    p99_range: tuple[float, float]  # 95 % bootstrap range of talbench p99 - reference p99
    p50_goal: float
    p99_goal: float

    @property
    def met(self) -> bool:
        return self.p50_apart <= self.p50_goal and self.p99_apart <= self.p99_goal

    def as_dict(self) -> dict:
        return {
            "p50_apart_ms": self.p50_apart,
            "p99_apart_ms": self.p99_apart,
            "p99_difference_95pct_range_ms": list(self.p99_range),
            "goal_p50_ms": self.p50_goal,
            "goal_p99_ms": self.p99_goal,
            "met": self.met,
        }


def describe(record: dict) -> str:
    """One line for an ``Agreement.as_dict()`` record."""
    low, high = record["p99_difference_95pct_range_ms"]
    return (
        f"p50 {record['p50_apart_ms']:.3f} apart (goal {record['goal_p50_ms']:g}), "
        f"p99 {record['p99_apart_ms']:.3f} apart (goal {record['goal_p99_ms']:g}; talbench - ping "
        f"{low:+.3f}..{high:+.3f} at 95 %): {'met' if record['met'] else 'MISSED'}"
    )


def agreement(ours: Sequence[float], theirs: Sequence[float], *, delayed: bool, seed: int = 14) -> Agreement:
    """talbench's samples against the reference's (ms), both non-empty."""
    if not ours or not theirs:
        raise ValueError("agreement needs samples from both tools")
    p50_goal, p99_goal = GOALS_MS[delayed]
    a, b = sorted(ours), sorted(theirs)
    return Agreement(
        p50_apart=abs(percentile(a, 50) - percentile(b, 50)),
        p99_apart=abs(percentile(a, 99) - percentile(b, 99)),
        p99_range=_p99_difference_range(a, b, seed),
        p50_goal=p50_goal,
        p99_goal=p99_goal,
    )


def _p99_difference_range(a: Sequence[float], b: Sequence[float], seed: int) -> tuple[float, float]:
    interval = bootstrap_difference(
        Percentile(99),
        Distribution.of_samples(b),
        Distribution.of_samples(a),
        resamples=RESAMPLES,
        confidence=0.95,
        seed=seed,
    )
    return interval.low, interval.high
