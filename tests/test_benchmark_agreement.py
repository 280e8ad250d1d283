"""The RTT benchmark's agreement figures (benchmarks/agreement.py)."""

import random

import pytest

from benchmarks.agreement import agreement, describe


def _path(n: int, seed: int) -> list[float]:
    # a wire of 20 ms with a long tail: 2 % of the round trips meet a stall of 0.5-3 ms
    rng = random.Random(seed)
    return [20.0 + rng.gauss(0.3, 0.02) + (rng.uniform(0.5, 3.0) if rng.random() < 0.02 else 0.0) for _ in range(n)]


def test_the_same_samples_agree_and_the_range_holds_zero():
    samples = _path(2000, 1)
    found = agreement(samples, samples, delayed=True)
    assert found.p50_apart == 0 and found.p99_apart == 0
    low, high = found.p99_range
    assert low <= 0 <= high
    assert found.met


def test_a_constant_offset_is_found_and_misses_the_goal():
    theirs = _path(3000, 2)
    ours = [v + 0.3 for v in theirs]
    found = agreement(ours, theirs, delayed=True)
    assert found.p50_apart == pytest.approx(0.3) and found.p99_apart == pytest.approx(0.3)
    assert not found.met
    assert describe(found.as_dict()).endswith("MISSED")


def test_the_goal_depends_on_the_path():
    theirs = _path(3000, 3)
    ours = [v + 0.07 for v in theirs]
    assert agreement(ours, theirs, delayed=True).met  # p50 within 0.1 through the delay line
    assert not agreement(ours, theirs, delayed=False).met  # but not within 0.05 on the bridge


def test_few_samples_of_a_stalled_path_give_a_wide_range():
    # two flows of the same wire: with 300 samples the p99 rests on the third-worst round trip
    few = agreement(_path(300, 4), _path(300, 5), delayed=True)
    many = agreement(_path(3000, 6), _path(3000, 7), delayed=True)
    assert few.p99_range[1] - few.p99_range[0] > 2 * (many.p99_range[1] - many.p99_range[0])


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="both tools"):
        agreement([], [1.0], delayed=False)
