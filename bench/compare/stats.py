"""Confidence intervals for the change of a judged statistic between two runs.  Pure: no I/O.

**Percentiles (and medians): a percentile bootstrap of the difference.**  Each run's stored raw
samples (or fio's histogram, which is a list of samples with repeated values) are resampled with
replacement; the statistic the check judges (type-7 interpolated percentile for RTT, fio's
first-bucket rule for fio histograms) is taken on each resample of BASE and of NEW, and the
interval is the central ``confidence`` share of the ``resamples`` differences NEW* - BASE*.  The
two runs are independent samples, so they are resampled independently.  Percentiles are always
taken over a run's own pooled samples, never averaged.

The bootstrap does not draw n values per resample: the k-th smallest of n values drawn with
replacement from the empirical distribution F_n is F_n^-1(U_(k)), where U_(k), the k-th smallest
of n uniforms, is Beta(k, n+1-k) distributed, and given U_(k) = u the next one is
u + (1-u) * Beta(1, n-k).  So one resample of a percentile costs two Beta draws whatever n is,
and is exactly what resampling all n values would give.  A seeded ``random.Random`` makes every
interval reproducible.

A maximum has no bootstrap interval (the resampled maximum never exceeds the observed one: the
bootstrap is inconsistent there), so a maximum is compared by value only.

**Proportions (loss): Newcombe's hybrid score interval** for the difference of two independent
proportions (Newcombe 1998, method 10), from each side's Wilson score interval; sound at 0 %
and 100 %, where the normal approximation is not.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

MAX_RESAMPLES = 100_000


@dataclass(frozen=True)
class Distribution:
    """The observed values of one subject in one run: distinct values (ascending) and the running
    count up to each, so a histogram of a million fsyncs costs its buckets, not its samples."""

    values: tuple[float, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of_samples(cls, samples: Iterable[float]) -> Distribution:
        counts: dict[float, int] = {}
        for value in samples:
            counts[float(value)] = counts.get(float(value), 0) + 1
        return cls.of_histogram(counts)

    @classmethod
    def of_histogram(cls, bins: Mapping[float, int]) -> Distribution:
        ordered = sorted((float(v), int(c)) for v, c in bins.items() if int(c) > 0)
        running, cumulative = 0, []
        for _value, count in ordered:
            running += count
            cumulative.append(running)
        return cls(tuple(v for v, _ in ordered), tuple(cumulative))

    @property
    def count(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def at_rank(self, k: int) -> float:
        """The k-th smallest value (1-based)."""
        return self.values[bisect.bisect_left(self.cumulative, k)]

    def at_fraction(self, u: float) -> float:
        """F_n^-1(u): the smallest value whose running share reaches u."""
        return self.at_rank(min(self.count, max(1, math.ceil(u * self.count))))


@dataclass(frozen=True)
class Percentile:
    """The q-th percentile (0..100) by ``rule``: "linear" interpolates between closest ranks
    (numpy's default, bench.stats.percentile), "first" is fio's rule, the first value whose
    running count reaches q percent."""

    q: float
    rule: str = "linear"

    def of(self, dist: Distribution) -> float:
        n = dist.count
        if self.rule == "first":
            return dist.at_rank(max(1, math.ceil(self.q / 100.0 * n)))
        position = (n - 1) * self.q / 100.0
        low = math.floor(position)
        a, b = dist.at_rank(low + 1), dist.at_rank(min(low + 2, n))
        return a + (b - a) * (position - low)

    def resample(self, dist: Distribution, rng: random.Random) -> float:
        """The statistic on one bootstrap resample of ``dist`` (see the module docstring)."""
        n = dist.count
        if self.rule == "first":
            k = max(1, math.ceil(self.q / 100.0 * n))
            return dist.at_fraction(rng.betavariate(k, n + 1 - k))
        position = (n - 1) * self.q / 100.0
        low = math.floor(position)
        k = low + 1
        u = rng.betavariate(k, n + 1 - k)
        a = dist.at_fraction(u)
        fraction = position - low
        if k >= n or fraction == 0:
            return a
        # Beta(1, m) by inversion of its distribution function 1 - (1 - x)^m
        v = u + (1 - u) * (1 - (1 - rng.random()) ** (1 / (n - k)))
        return a + (dist.at_fraction(v) - a) * fraction


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap_difference(
    statistic: Percentile,
    base: Distribution,
    new: Distribution,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """Percentile-bootstrap interval of statistic(NEW) - statistic(BASE)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} outside (0, 1)")
    if not 1 <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples {resamples} outside 1..{MAX_RESAMPLES}")
    if not base.count or not new.count:
        raise ValueError("bootstrap of no samples")
    rng = random.Random(seed)
    differences = sorted(statistic.resample(new, rng) - statistic.resample(base, rng) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return Interval(_type7(differences, tail), _type7(differences, 1 - tail))


def _type7(ordered: list[float], p: float) -> float:
    position = (len(ordered) - 1) * p
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def wilson(events: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for events/trials."""
    p = events / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(
    base_events: int, base_trials: int, new_events: int, new_trials: int, *, confidence: float
) -> Interval:
    """Newcombe's hybrid score interval of new_events/new_trials - base_events/base_trials."""
    if base_trials <= 0 or new_trials <= 0:
        raise ValueError("a proportion of no trials")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p1, p2 = base_events / base_trials, new_events / new_trials
    l1, u1 = wilson(base_events, base_trials, z)
    l2, u2 = wilson(new_events, new_trials, z)
    d = p2 - p1
    return Interval(d - math.hypot(p2 - l2, u1 - p1), d + math.hypot(u2 - p2, p1 - l1))
