import math

import pytest

from talbench.bench.judge import judge, judge_subject, overall
from talbench.bench.model import Check, Measurement, ResultKey, Scope, Status, Subject
from talbench.bench.plan import make_plan
from talbench.bench.probes import default_drivers
from talbench.bench.run import exit_code, metrics_of
from talbench.bench.units import Dimension, parse_quantity
from tests.bench.factories import nodes, rtt

METRICS = metrics_of(default_drivers())
P99 = METRICS["rtt.p99"]
CLUSTER = nodes(3, 1)


def cp_check(warn="10ms", fail="15ms") -> Check:
    return Check(
        "cp-rtt",
        "rtt.p99",
        Scope.CONTROL_PLANE_PAIRS,
        parse_quantity(warn, Dimension.DURATION) if warn else None,
        parse_quantity(fail, Dimension.DURATION) if fail else None,
        "reference architecture",
    )


def both(a, b, ms, **kw):
    return {m.key: m for m in (rtt(a, b, ms, **kw), rtt(b, a, ms, **kw))}


@pytest.mark.parametrize(
    ("samples_ms", "status", "p99"),
    [
        ([1.0] * 200, Status.PASS, 0.001),
        ([12.0] * 200, Status.WARN, 0.012),
        ([1.0] * 190 + [20.0] * 10, Status.FAIL, 0.020),  # 5 % slow: p99 sees it, the median would not
    ],
)
def test_thresholds_apply_to_the_pooled_p99(samples_ms, status, p99):
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), both("cp1", "cp2", samples_ms), CLUSTER)
    assert verdict.status is status
    assert verdict.observed == pytest.approx(p99)


def test_exactly_at_the_limit_fails_because_the_rule_is_strictly_less_than():
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), both("cp1", "cp2", [15.0] * 200), CLUSTER)
    assert verdict.status is Status.FAIL
    assert verdict.observed == pytest.approx(0.015)


def test_a_missing_direction_is_no_data_never_a_pass():
    results = {m.key: m for m in [rtt("cp1", "cp2", [1.0] * 200)]}
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.NO_DATA
    assert "rtt:cp2->cp1: no result" in verdict.message


def test_a_failed_agent_result_is_no_data_with_its_reason():
    results = both("cp1", "cp2", [1.0] * 200)
    dead = ResultKey("rtt", "cp2", "cp1")
    results[dead] = Measurement(dead, False, error="agent cp2: ServerDisconnectedError")
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.NO_DATA and "ServerDisconnectedError" in verdict.message


def test_too_few_samples_or_a_saturated_agent_is_invalid_not_judged():
    few = judge_subject(
        cp_check(), P99, Subject(("cp1", "cp2")), both("cp1", "cp2", [1.0] * 10, min_samples=50), CLUSTER
    )
    assert few.status is Status.INVALID and "too few samples" in few.message
    busy = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), both("cp1", "cp2", [1.0] * 200, cpu=99.0), CLUSTER)
    assert busy.status is Status.INVALID and "saturated" in busy.message
    results = both("cp1", "cp2", [30.0] * 200)
    stalled_key = ResultKey("rtt", "cp2", "cp1")
    stalled = results[stalled_key]
    stalls = {
        "loop_lag_max_ms": 38.0,
        "loop_ticks": 150,
        "loop_ticks_late": 9,
        "loop_late_ms": 5.0,
        "cpu_system_percent": 86.0,
    }
    results[stalled_key] = Measurement(stalled_key, True, stalled.data, resources=stalls)
    lagging = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert lagging.status is Status.INVALID
    assert "cp2 was stalled >= 5 ms in 9 of 150 wake-ups (worst 38 ms, host CPU 86 %)" in lagging.message
    # one stall in a long job touches a sample or two: judged
    results[stalled_key] = Measurement(stalled_key, True, stalled.data, resources={**stalls, "loop_ticks_late": 2})
    assert judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER).status is Status.FAIL


def test_no_replies_at_all_fails_as_unbounded_latency():
    results = both("cp1", "cp2", [], sent=100)
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.FAIL and math.isinf(verdict.observed)


def test_a_check_without_limits_reports_info():
    verdict = judge_subject(
        cp_check(None, None), P99, Subject(("cp1", "cp2")), both("cp1", "cp2", [1.0] * 200), CLUSTER
    )
    assert verdict.status is Status.INFO


@pytest.mark.parametrize("value", [None, 0.001, 0.5])
def test_a_subject_the_probe_chose_not_to_measure_is_reported_never_judged(value):
    from dataclasses import replace

    from talbench.bench.model import Observation

    skipped = replace(
        P99, observe=lambda subject, measurements, nodes: Observation(value, not_measured="outside the sample")
    )
    verdict = judge_subject(cp_check(), skipped, Subject(("cp1", "cp2")), both("cp1", "cp2", [1.0] * 200), CLUSTER)
    assert (verdict.status, verdict.message) == (Status.INFO, "not measured: outside the sample")
    assert exit_code([verdict]) == 0


def test_judge_gives_every_planned_subject_one_verdict_and_the_exit_code_follows():
    plan = make_plan([cp_check()], CLUSTER, METRICS)
    results = {}
    for a, b in (("cp1", "cp2"), ("cp1", "cp3"), ("cp2", "cp3")):
        results.update(both(a, b, [30.0] * 200 if "cp3" in (a, b) else [1.0] * 200))
    verdicts = judge(plan, results, CLUSTER, METRICS)
    assert {str(v.subject): v.status for v in verdicts} == {
        "cp1-cp2": Status.PASS,
        "cp1-cp3": Status.FAIL,
        "cp2-cp3": Status.FAIL,
    }
    assert overall(verdicts) is Status.FAIL and exit_code(verdicts) == 1
    passing = judge(
        plan, {**results, **both("cp1", "cp3", [1.0] * 200), **both("cp2", "cp3", [12.0] * 200)}, CLUSTER, METRICS
    )
    assert exit_code(passing) == 0  # warnings are allowed


def test_an_empty_scope_is_reported_and_no_verdicts_is_not_a_pass():
    plan = make_plan([cp_check()], nodes(1, 2), METRICS)
    (verdict,) = judge(plan, {}, nodes(1, 2), METRICS)
    assert verdict.status is Status.INFO and "nothing in scope" in verdict.message
    assert exit_code([]) == 1
