"""A mergeable latency histogram with stated resolution, for results too many to keep raw.
Pure: no I/O.

Log-linear buckets (as HdrHistogram's): values from 1 to 2**63 ns, each power of two split into
SUB_BUCKETS equal buckets, so a bucket is at most 1/SUB_BUCKETS of its values wide: with 32, a
percentile read from it is within 1.6 % of the true sample (half a bucket either way; 0 ns and
1 ns are exact).  Counts are exact; merging adds counts, so percentiles of merged histograms are
percentiles of the pooled samples at that resolution, never averages of percentiles.

JSON form (``to_json``/``from_json``): ``{"scheme": "log2-linear/32", "unit": "ns",
"count": n, "min": ns, "max": ns, "buckets": [[index, count], ...]}``.  In memory the counts are
``Buckets``, two arrays of the occupied buckets: a 1,000-node run keeps two histograms for each
of its ~6,000 directions, each a fraction of the JSON form's lists (docs/measurements.md).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import Any

SUB_BUCKETS = 32
SCHEME = f"log2-linear/{SUB_BUCKETS}"
RESOLUTION = 1.0 / (2 * SUB_BUCKETS)  # the largest relative error of a value read from a bucket


def bucket_of(value: int) -> int:
    """The bucket holding ``value`` (ns, >= 0)."""
    if value < SUB_BUCKETS:
        return max(0, value)  # exact below SUB_BUCKETS
    exponent = value.bit_length() - 1  # value in [2**exponent, 2**(exponent + 1))
    shift = exponent - (SUB_BUCKETS.bit_length() - 1)
    return (shift + 1) * SUB_BUCKETS + ((value >> shift) - SUB_BUCKETS)


MAX_BUCKET = 0xFFFF  # far above bucket_of(2**63): an index fits in 16 bits


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) of a bucket."""
    if index < SUB_BUCKETS:
        return index, index + 1
    shift = index // SUB_BUCKETS - 1
    low = (SUB_BUCKETS + index % SUB_BUCKETS) << shift
    return low, low + (1 << shift)


class Buckets(Mapping[int, int]):
    """Bucket index -> count, the occupied buckets only, in ascending order: two arrays (index,
    count) rather than a dict of int objects.  Immutable; equal to any mapping of the same items."""

    __slots__ = ("_counts", "_indexes")

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        occupied = sorted((int(bucket), int(n)) for bucket, n in (counts or {}).items() if n)
        if occupied and (occupied[0][0] < 0 or occupied[-1][0] > MAX_BUCKET):
            raise ValueError(f"bucket index outside 0..{MAX_BUCKET}")
        if any(n < 0 for _, n in occupied):
            raise ValueError("a negative bucket count")
        self._indexes = array("H", (bucket for bucket, _ in occupied))
        self._counts = array("Q", (n for _, n in occupied))

    def __getitem__(self, bucket: int) -> int:
        at = bisect_left(self._indexes, bucket)
        if at == len(self._indexes) or self._indexes[at] != bucket:
            raise KeyError(bucket)
        return self._counts[at]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indexes)

    def __len__(self) -> int:
        return len(self._indexes)

    def items(self) -> ItemsView[int, int]:
        return _Items(self)

    def values(self) -> ValuesView[int]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"Buckets({dict(self.items())!r})"


class _Items(ItemsView[int, int]):
    """Buckets' (index, count) pairs straight from its arrays (Mapping's own looks each one up)."""

    _mapping: Buckets

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._mapping._indexes, self._mapping._counts, strict=True)


class _Values(ValuesView[int]):
    _mapping: Buckets

    def __iter__(self) -> Iterator[int]:
        return iter(self._mapping._counts)


@dataclass(frozen=True, slots=True)
class Histogram:
    counts: Mapping[int, int] = field(default_factory=Buckets)
    minimum: int | None = None
    maximum: int | None = None

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        counts: dict[int, int] = {}
        low = high = None
        for value in values:
            value = int(value)
            bucket = bucket_of(value)
            counts[bucket] = counts.get(bucket, 0) + 1
            low = value if low is None else min(low, value)
            high = value if high is None else max(high, value)
        return cls(Buckets(counts), low, high)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Histogram) -> Histogram:
        counts = dict(self.counts.items())
        for bucket, n in other.counts.items():
            counts[bucket] = counts.get(bucket, 0) + n
        lows = [v for v in (self.minimum, other.minimum) if v is not None]
        highs = [v for v in (self.maximum, other.maximum) if v is not None]
        return Histogram(Buckets(counts), min(lows, default=None), max(highs, default=None))

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100), ns: the middle of the bucket holding that rank (the
        nearest-rank sample), clamped to the exact minimum and maximum."""
        total = self.count
        if not total:
            raise ValueError("percentile of an empty histogram")
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q} outside 0..100")
        rank = max(1, -(-q * total // 100))  # nearest rank, 1-based
        seen = 0
        for bucket, n in sorted(self.counts.items()):
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(bucket)
                middle = (low + high - 1) / 2
                return float(min(max(middle, self.minimum or 0), self.maximum if self.maximum is not None else middle))
        return float(self.maximum or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "unit": "ns",
            "count": self.count,
            "min": self.minimum,
            "max": self.maximum,
            "buckets": [[bucket, n] for bucket, n in sorted(self.counts.items())],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Histogram:
        if doc.get("scheme") != SCHEME:
            raise ValueError(f"histogram scheme {doc.get('scheme')!r}, expected {SCHEME}")
        counts: dict[int, int] = {}
        for bucket, n in doc.get("buckets") or ():
            counts[int(bucket)] = counts.get(int(bucket), 0) + int(n)
        return cls(Buckets(counts), doc.get("min"), doc.get("max"))
