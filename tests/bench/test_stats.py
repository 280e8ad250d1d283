import pytest

from talbench.bench.stats import Summary, jitter, percentile


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


def test_percentiles_come_from_pooled_samples_not_averaged_percentiles():
    fast = [1.0] * 99 + [2.0]
    slow = [10.0] * 100
    pooled = Summary.of(fast + slow).p99
    averaged = (Summary.of(fast).p99 + Summary.of(slow).p99) / 2
    assert pooled == pytest.approx(10.0)
    assert averaged != pytest.approx(pooled)


def test_summary_and_jitter():
    summary = Summary.of([3.0, 1.0, 2.0])
    assert (summary.minimum, summary.p50, summary.maximum, summary.count) == (1.0, 2.0, 3.0, 3)
    assert summary.stdev == pytest.approx(1.0)
    assert jitter([1.0, 3.0, 2.0]) == pytest.approx(1.5)
    assert jitter([5.0]) == 0.0
    with pytest.raises(ValueError):
        Summary.of([])
