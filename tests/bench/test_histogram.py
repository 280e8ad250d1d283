"""Mergeable log-linear histograms (bench/histogram.py) and RTT results compacted into them: the
figures a user reads stay within the stated resolution of the raw samples' and never come from
averaged percentiles."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from talbench.bench.histogram import RESOLUTION, SCHEME, Buckets, Histogram, bucket_bounds, bucket_of
from talbench.bench.model import Measurement, ResultKey, Subject
from talbench.bench.probes.rtt.metrics import RTT_METRICS, compact, kernel_stamped
from talbench.bench.report.runjson.write import data_dict
from talbench.bench.stats import Summary

METRICS = {m.name: m for m in RTT_METRICS}


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-int(q * len(ordered)) // 100)) - 1]


def test_every_value_falls_in_its_bucket_and_buckets_are_narrow():
    for value in [*range(300), 1_000, 123_456, 10**9, 2**40 + 12_345, 2**62]:
        low, high = bucket_bounds(bucket_of(value))
        assert low <= value < high
        assert high - low <= max(1, low * 2 * RESOLUTION)


def test_percentiles_are_within_the_stated_resolution_and_merging_pools():
    rng = random.Random(7)
    a = [int(rng.lognormvariate(13, 1)) for _ in range(5_000)]
    b = [int(rng.lognormvariate(15, 0.5)) for _ in range(3_000)]
    merged = Histogram.of(a).merge(Histogram.of(b))
    assert merged.count == 8_000 and merged == Histogram.of(a + b)
    for q in (50, 90, 99, 99.9):
        exact = nearest_rank(a + b, q)
        assert abs(merged.percentile(q) - exact) <= exact * RESOLUTION + 1, q
    assert merged.maximum == max(a + b) and merged.minimum == min(a + b)
    doc = json.loads(json.dumps(merged.to_json()))
    assert doc["scheme"] == SCHEME and Histogram.from_json(doc) == merged
    with pytest.raises(ValueError, match="scheme"):
        Histogram.from_json({**doc, "scheme": "linear"})
    with pytest.raises(ValueError):
        Histogram().percentile(50)


def direction(node: str, peer: str, samples: list[int]) -> Measurement:
    n = len(samples)
    data = {
        "sent": n,
        "received": n,
        "samples_ns": samples,
        "dwell_ns": [50_000] * n,
        "t1_base_ns": 0,
        "t1_ns": list(range(n)),
        "t2_base_ns": 0,
        "t2_ns": list(range(n)),
        "stamps": {"t1_kernel": n, "t2_kernel": n, "t4_kernel": n, "reflected": n},
        "min_samples": 100,
    }
    return Measurement(ResultKey("rtt", node, peer), True, data)


def test_a_compacted_pair_reads_the_same_figures_within_resolution_and_is_small():
    rng = random.Random(3)
    there = direction("w1", "w2", [int(rng.gauss(400_000, 30_000)) for _ in range(300)])
    back = direction("w2", "w1", [int(rng.gauss(420_000, 60_000)) for _ in range(300)])
    small = [Measurement(m.key, True, compact(m.data)) for m in (there, back)]
    assert all("samples_ns" not in m.data and kernel_stamped(m.data) for m in small)
    written = [data_dict(m.data) for m in small]  # as run.json writes them
    assert len(json.dumps(written)) * 5 < len(json.dumps([m.data for m in (there, back)]))
    subject = Subject(("w1", "w2"))
    pooled = there.data["samples_ns"] + back.data["samples_ns"]
    for name, q in (("rtt.p50", 50), ("rtt.p99", 99)):
        raw = METRICS[name].observe(subject, [there, back], ())
        hist = METRICS[name].observe(subject, small, ())
        assert abs(hist.value * 1e9 - nearest_rank(pooled, q)) <= nearest_rank(pooled, q) * RESOLUTION + 1
        assert raw.value == pytest.approx(hist.value, rel=0.05)
        assert "from histograms" in hist.detail and "from histograms" not in raw.detail
    assert METRICS["rtt.max"].observe(subject, small, ()).value == max(pooled) / 1e9
    jitter_raw = METRICS["rtt.jitter"].observe(subject, [there, back], ()).value
    assert METRICS["rtt.jitter"].observe(subject, small, ()).value == pytest.approx(jitter_raw)
    # one direction raw, the other compacted: pooled all the same
    mixed = METRICS["rtt.p99"].observe(subject, [there, small[1]], ())
    assert mixed.value == pytest.approx(Summary.of([ns / 1e9 for ns in pooled]).p99, rel=0.05)
    assert METRICS["rtt.dwell.p99"].observe(subject, small, ()).value == pytest.approx(50e-6, rel=RESOLUTION)
    assert METRICS["rtt.loss"].observe(subject, small, ()).value == 0


def test_a_compacted_direction_is_small_in_memory():
    """A 1,000-node run keeps ~6,000 compacted directions until it has written its results: each
    one's two histograms take about a kilobyte, not the 16 KB of their JSON form's lists."""
    rng = random.Random(5)
    raw = [direction("w1", "w2", [int(rng.lognormvariate(12.9, 0.3)) for _ in range(300)]) for _ in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [compact(m.data) for m in raw]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(isinstance(d["histogram_ns"], Histogram) and d["histogram_ns"].count == 300 for d in kept)
    assert held / len(kept) < 4_000, held / len(kept)  # ~1,500; the JSON form took ~8,000 (one dwell bucket)


def test_buckets_are_a_mapping_in_ascending_order():
    counts = Buckets({500: 2, 31: 1, 400: 0, 1919: 7})
    assert list(counts) == [31, 500, 1919] and counts[500] == 2 and 400 not in counts and len(counts) == 3
    assert counts == {31: 1, 500: 2, 1919: 7} and Histogram(counts) == Histogram({31: 1, 500: 2, 1919: 7})
    with pytest.raises(KeyError):
        counts[32]
    for bad in ({-1: 1}, {70_000: 1}, {5: -1}):
        with pytest.raises(ValueError):
            Buckets(bad)
