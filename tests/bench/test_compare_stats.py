"""The intervals behind `talbench compare`, on synthetic samples."""

from __future__ import annotations

import random

import pytest

from talbench.bench.compare.stats import (
    Distribution,
    Percentile,
    bootstrap_difference,
    newcombe_difference,
    wilson,
)
from talbench.bench.stats import percentile


def _brute_force(values: list[float], statistic: Percentile, resamples: int, rng: random.Random) -> list[float]:
    """The textbook bootstrap: draw n values with replacement, take the statistic."""
    out = []
    for _ in range(resamples):
        drawn = sorted(rng.choice(values) for _ in values)
        out.append(statistic.of(Distribution.of_samples(drawn)))
    return sorted(out)


def _quantile(ordered: list[float], p: float) -> float:
    return percentile(ordered, p * 100)


@pytest.mark.parametrize(
    "statistic", [Percentile(50), Percentile(90), Percentile(99, "first"), Percentile(75, "first")]
)
def test_order_statistic_shortcut_draws_what_resampling_every_value_draws(statistic):
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.6) for _ in range(60)]
    dist = Distribution.of_samples(values)
    brute = _brute_force(values, statistic, 3000, random.Random(1))
    shortcut_rng = random.Random(2)
    shortcut = sorted(statistic.resample(dist, shortcut_rng) for _ in range(3000))
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):
        a, b = _quantile(brute, p), _quantile(shortcut, p)
        assert abs(a - b) <= 0.08 * max(abs(a), 1e-9) + 0.02, (p, a, b)


def test_point_estimates_follow_the_judges_rules():
    values = [float(v) for v in range(1, 101)]
    dist = Distribution.of_samples(values)
    assert Percentile(99).of(dist) == pytest.approx(percentile(values, 99))  # type 7, as bench.stats
    assert Percentile(50).of(dist) == pytest.approx(50.5)
    # fio's rule: the first bucket where the running count reaches q %
    histogram = Distribution.of_histogram({1.0: 90, 2.0: 9, 50.0: 1})
    assert Percentile(99, "first").of(histogram) == 2.0
    assert Percentile(99.5, "first").of(histogram) == 50.0
    assert histogram.count == 100


def test_same_samples_give_an_interval_around_zero_and_a_shift_one_that_excludes_it():
    rng = random.Random(3)
    base = Distribution.of_samples(rng.gauss(1.0, 0.1) for _ in range(400))
    same = bootstrap_difference(Percentile(99), base, base, resamples=2000, confidence=0.95, seed=1)
    assert same.low < 0 < same.high
    shifted = Distribution.of_samples(rng.gauss(1.5, 0.1) for _ in range(400))
    moved = bootstrap_difference(Percentile(99), base, shifted, resamples=2000, confidence=0.95, seed=1)
    assert moved.excludes_zero() and 0.3 < moved.low < moved.high < 0.7


def test_a_fixed_seed_gives_the_same_interval():
    dist = Distribution.of_samples([1.0, 2.0, 3.0, 5.0, 8.0, 13.0] * 20)
    other = Distribution.of_samples([1.5, 2.0, 3.5, 5.0, 9.0, 14.0] * 20)
    first = bootstrap_difference(Percentile(90), dist, other, resamples=500, confidence=0.9, seed=42)
    assert bootstrap_difference(Percentile(90), dist, other, resamples=500, confidence=0.9, seed=42) == first


def test_bounds_are_enforced():
    dist = Distribution.of_samples([1.0, 2.0])
    with pytest.raises(ValueError):
        bootstrap_difference(Percentile(50), dist, dist, resamples=10**7, confidence=0.95, seed=0)
    with pytest.raises(ValueError):
        bootstrap_difference(Percentile(50), dist, Distribution.of_samples([]), resamples=10, confidence=0.95, seed=0)


def test_newcombe_interval_of_proportions():
    # Newcombe (1998), table II, example (a): 56/70 - 48/80 = 0.2, 95 % interval 0.0524 .. 0.3339
    interval = newcombe_difference(48, 80, 56, 70, confidence=0.95)
    assert interval.low == pytest.approx(0.0524, abs=5e-4)
    assert interval.high == pytest.approx(0.3339, abs=5e-4)
    # no loss on either side: the interval holds zero, and is sound at the boundary
    none = newcombe_difference(0, 600, 0, 600, confidence=0.95)
    assert none.low < 0 < none.high
    low, high = wilson(0, 10, 1.96)
    assert low == 0.0 and 0 < high < 0.35
    # 0 of 600 lost, then 30 of 600: a real increase
    assert newcombe_difference(0, 600, 30, 600, confidence=0.95).low > 0
