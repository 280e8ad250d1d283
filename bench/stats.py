"""Summaries of raw samples.  Percentiles are always taken over the pooled raw samples; never
averaged from other percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted values, linear interpolation between
    closest ranks (numpy's default, Hyndman & Fan type 7)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class Summary:
    count: int
    minimum: float
    p50: float
    p90: float
    p99: float
    maximum: float
    mean: float
    stdev: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        ordered = sorted(values)
        if not ordered:
            raise ValueError("summary of no values")
        n = len(ordered)
        mean = math.fsum(ordered) / n
        variance = math.fsum((v - mean) ** 2 for v in ordered) / (n - 1) if n > 1 else 0.0
        return cls(
            count=n,
            minimum=ordered[0],
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            maximum=ordered[-1],
            mean=mean,
            stdev=math.sqrt(variance),
        )


def jitter(series: Sequence[float]) -> float:
    """Mean absolute difference between consecutive samples of one stream (in send order), the
    inter-arrival variation of RFC 3550 without its smoothing.  0 for fewer than two samples."""
    if len(series) < 2:
        return 0.0
    return math.fsum(abs(b - a) for a, b in pairwise(series)) / (len(series) - 1)
