"""A mergeable log-linear latency histogram (microsecond resolution, ~3 % bucket width).

Values below 64 µs have one bucket each; above, every power of two is split into 32 equal
buckets, so a bucket is at most 1/32 of its value wide.  Count, sum, sum of squares, minimum and
maximum are kept exactly: the mean, the standard deviation and the slowest request are exact;
percentiles carry the bucket resolution.  Histograms merge by adding counts, which is how the
coordinator pools workers and agents (never by averaging percentiles).

Wire form (schema 1): {"schema", "unit": "us", "sub_bits": 5, "count", "sum", "sumsq", "min",
"max", "buckets": {"index": count}}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

SCHEMA = 1
SUB_BITS = 5
_SUB = 1 << SUB_BITS  # 32 buckets per power of two
_LINEAR_LIMIT = 2 * _SUB  # below this every microsecond has its own bucket


def bucket_index(micros: int) -> int:
    if micros < _LINEAR_LIMIT:
        return micros if micros > 0 else 0
    shift = micros.bit_length() - (SUB_BITS + 1)
    return _SUB * shift + (micros >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) in microseconds of bucket ``index``."""
    if index < _LINEAR_LIMIT:
        return index, index + 1
    shift = index // _SUB - 1
    top = index - _SUB * shift
    return top << shift, (top + 1) << shift


class LatencyHistogram:
    """Accumulates latencies (seconds in, microseconds inside).  Mutable while recording; the
    wire dict is what leaves the process."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total", "total_sq")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0  # µs
        self.total_sq = 0.0  # µs²
        self.minimum = math.inf
        self.maximum = 0.0

    def record(self, seconds: float) -> None:
        micros = seconds * 1e6
        if micros < 0:
            micros = 0.0
        index = bucket_index(int(micros))
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += micros
        self.total_sq += micros * micros
        if micros < self.minimum:
            self.minimum = micros
        if micros > self.maximum:
            self.maximum = micros

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        return self

    # ---- summaries (seconds) ---------------------------------------------------------------

    def mean(self) -> float | None:
        return self.total / self.count / 1e6 if self.count else None

    def stddev(self) -> float | None:
        """Population standard deviation (as etcd's benchmark reports it)."""
        if not self.count:
            return None
        mean = self.total / self.count
        variance = max(0.0, self.total_sq / self.count - mean * mean)
        return math.sqrt(variance) / 1e6

    def max(self) -> float | None:
        return self.maximum / 1e6 if self.count else None

    def min(self) -> float | None:
        return self.minimum / 1e6 if self.count else None

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100): the middle of the bucket holding the rank-th value,
        clipped to the exact minimum and maximum."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q} outside 0..100")
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = (low + high) / 2.0 if high - low > 1 else float(low) + 0.5
                return min(max(middle, self.minimum), self.maximum) / 1e6
        return self.maximum / 1e6

    def count_above(self, seconds: float) -> int:
        """How many recorded values exceed ``seconds`` (to the bucket resolution: buckets whose
        lower bound is at or above it count whole)."""
        limit = seconds * 1e6
        return sum(count for index, count in self.buckets.items() if bucket_bounds(index)[0] >= limit)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "min": self.min(),
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "p999": self.percentile(99.9),
            "max": self.max(),
            "mean": self.mean(),
            "stddev": self.stddev(),
        }

    # ---- wire ------------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "unit": "us",
            "sub_bits": SUB_BITS,
            "count": self.count,
            "sum": self.total,
            "sumsq": self.total_sq,
            "min": self.minimum if self.count else None,
            "max": self.maximum if self.count else None,
            "buckets": {str(index): count for index, count in sorted(self.buckets.items())},
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> LatencyHistogram:
        if (
            not isinstance(raw, Mapping)
            or raw.get("schema") != SCHEMA
            or raw.get("sub_bits") != SUB_BITS
            or raw.get("unit") != "us"
        ):
            raise ValueError("not a schema-1 latency histogram")
        histogram = cls()
        buckets = raw.get("buckets") or {}
        if not isinstance(buckets, Mapping):
            raise ValueError("histogram buckets must be a mapping")
        for index, count in buckets.items():
            if not str(index).isdigit() or not isinstance(count, int) or count < 0:
                raise ValueError(f"bad histogram bucket {index!r}: {count!r}")
            if count:
                histogram.buckets[int(index)] = count
        histogram.count = int(raw.get("count") or 0)
        if histogram.count != sum(histogram.buckets.values()):
            raise ValueError("histogram count does not match its buckets")
        histogram.total = float(raw.get("sum") or 0.0)
        histogram.total_sq = float(raw.get("sumsq") or 0.0)
        if histogram.count:
            histogram.minimum = float(raw["min"])
            histogram.maximum = float(raw["max"])
        return histogram

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        result = cls()
        for part in parts:
            result.merge(part)
        return result
