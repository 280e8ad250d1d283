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


def test_kernel_stamped_round_trips_are_judged_whatever_the_agents_scheduling():
    """With kernel stamps at T1, T2 and T4 (and the reflector's dwell taken out) a stalled or
    saturated agent does not move the figure: the same stall that invalidates clock-read samples
    leaves these judged, and the detail names the dwell that was taken out."""
    stalls = {"loop_lag_max_ms": 38.0, "loop_ticks": 150, "loop_ticks_late": 9, "cpu_process_percent_max": 99.0}
    results = {}
    for key, m in both("cp1", "cp2", [0.4] * 200).items():
        n = len(m.data["samples_ns"])
        data = {
            **m.data,
            "dwell_ns": [20_000_000] * n,  # the reflector held every probe 20 ms
            "stamps": {"t1_kernel": n, "t2_kernel": n, "t4_kernel": n, "reflected": n},
        }
        results[key] = Measurement(key, True, data, resources=stalls)
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.PASS, verdict.message
    assert "reflector dwell p99 20 ms taken out" in verdict.detail
    # one direction with a sample whose send was not stamped by the kernel: the old rule again
    key = ResultKey("rtt", "cp2", "cp1")
    stamps = {**results[key].data["stamps"], "t1_kernel": 199}
    results[key] = Measurement(key, True, {**results[key].data, "stamps": stamps}, resources=stalls)
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.INVALID and "not the kernel's" in verdict.message


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


def throttle(measurement: Measurement, throttled: int, periods: int = 120, seconds: float = 1.8, quota=0.2):
    resources = {
        **measurement.resources,
        "cpu_throttled_periods": throttled,
        "cpu_periods": periods,
        "cpu_throttled_s": seconds,
        "cpu_quota_cores": quota,
    }
    return Measurement(measurement.key, measurement.ok, measurement.data, measurement.error, resources=resources)


@pytest.mark.parametrize("samples_ms", [[30.0] * 200, [1.0] * 200, [12.0] * 200, []])
def test_a_throttled_agent_makes_every_figure_invalid_with_the_throttling_named(samples_ms):
    """Fail, pass, warn or no replies at all: under a throttled quota none of it is the network's."""
    plan = make_plan([cp_check()], CLUSTER, METRICS)
    results = {}
    for a, b in (("cp1", "cp2"), ("cp1", "cp3"), ("cp2", "cp3")):
        results.update(both(a, b, samples_ms, sent=200))
    for key in [k for k in results if k.node == "cp1"]:
        results[key] = throttle(results[key], 37)
    verdicts = {str(v.subject): v for v in judge(plan, results, CLUSTER, METRICS)}
    for pair in ("cp1-cp2", "cp1-cp3"):
        assert verdicts[pair].status is Status.INVALID, verdicts[pair]
        assert verdicts[pair].message.startswith(
            "not judged: agent on cp1 was CPU-throttled in 37 of 120 periods (1.8 s) under a 0.2-core quota"
        )
    unthrottled = judge_subject(
        cp_check(), P99, Subject(("cp2", "cp3")), both("cp2", "cp3", samples_ms, sent=200), CLUSTER
    )
    assert verdicts["cp2-cp3"] == unthrottled and unthrottled.status is not Status.INVALID


def test_throttling_below_the_share_and_time_limits_is_judged_as_before():
    results = both("cp1", "cp2", [30.0] * 200)
    key = ResultKey("rtt", "cp1", "cp2")
    before = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    for throttled, periods, seconds, status in [
        (0, 150, 0.0, Status.FAIL),  # a quota never reached
        (1, 150, 0.05, Status.FAIL),  # one short stall in 150 periods: under 1 %, under 250 ms
        (2, 150, 0.1, Status.INVALID),  # 1.3 % of the periods
        (3, 1000, 0.3, Status.INVALID),  # 0.3 %, but 300 ms throttled: one stall could be a max
    ]:
        verdict = judge_subject(
            cp_check(),
            P99,
            Subject(("cp1", "cp2")),
            {**results, key: throttle(results[key], throttled, periods, seconds, quota=None)},
            CLUSTER,
        )
        assert verdict.status is status, (throttled, periods, verdict)
        if status is Status.FAIL:
            assert verdict == before
        else:
            assert f"in {throttled} of {periods} periods" in verdict.message and "under a CPU quota" in verdict.message


def test_a_throttled_job_that_failed_is_invalid_and_a_saturated_one_keeps_both_reasons():
    results = both("cp1", "cp2", [1.0] * 200, cpu=99.0)
    key = ResultKey("rtt", "cp2", "cp1")
    results[key] = throttle(results[key], 60)
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), results, CLUSTER)
    assert verdict.status is Status.INVALID
    assert "agent on cp2 was CPU-throttled" in verdict.message and "saturated" in verdict.message
    timed_out = Measurement(key, False, error="time limit of 30s exceeded", resources=results[key].resources)
    verdict = judge_subject(cp_check(), P99, Subject(("cp1", "cp2")), {**results, key: timed_out}, CLUSTER)
    assert verdict.status is Status.INVALID and "time limit of 30s exceeded" in verdict.message
    assert "cp2 was CPU-throttled in 60 of 120" in verdict.message


def test_throttling_leaves_figures_that_do_not_depend_on_timing_judged():
    """A node's core count is read right under any quota: sizes and kinds stay judged, while a
    timed figure of the same throttled job is invalid."""
    cores = Check(
        "cores", "node.cpu_cores", Scope.CONTROL_PLANE_NODES, None, parse_quantity("4", Dimension.COUNT), "src"
    )
    key = ResultKey("node", "cp1")
    facts = {"facts": {"cpus": 2, "memory_bytes": 8 * 2**30}}
    measurement = throttle(Measurement(key, True, data=facts), 100, 120, 5.0)
    verdict = judge_subject(cores, METRICS["node.cpu_cores"], Subject(("cp1",)), {key: measurement}, CLUSTER)
    assert verdict.status is Status.FAIL and verdict.observed == 2
    assert not METRICS["node.cpu_cores"].timed and METRICS["rtt.p99"].timed and METRICS["mtu.path"].timed
