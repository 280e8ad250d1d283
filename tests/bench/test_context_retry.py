"""Host context with every verdict, and the once-more rule for a fail measured on a busy host:
the pure parts (bench/context.py, bench/retry.py) on records shaped as the agents send them."""

from __future__ import annotations

from talbench.bench import retry
from talbench.bench.context import context_of, describe, noise
from talbench.bench.judge import judge
from talbench.bench.model import Measurement, ResultKey, Status
from talbench.bench.plan import make_plan
from talbench.bench.probes.rtt.driver import RTT_METRICS
from talbench.bench.scenario import parse
from tests.bench.factories import nodes

QUIET = {"host_steal_percent": 0.0, "host_iowait_percent": 1.0, "host_other_cpu_percent": 8.0}
BUSY = {**QUIET, "host_other_cpu_percent": 85.0}
METRICS = {m.name: m for m in RTT_METRICS}
SCENARIO = """\
schema: 1
name: t
checks:
  - name: cp-rtt
    metric: rtt.p99
    scope: control-plane-pairs
    fail: 15ms
    source: reference architecture
"""


def measured(node: str, peer: str, ms: float, resources: dict) -> Measurement:
    samples = [int(ms * 1e6)] * 150
    data = {"sent": 150, "received": 150, "samples_ns": samples, "min_samples": 100}
    return Measurement(ResultKey("rtt", node, peer), True, data, resources=resources)


def results(ms: dict[tuple[str, str], float], resources: dict) -> dict[ResultKey, Measurement]:
    out = {}
    for (a, b), value in ms.items():
        for m in (measured(a, b, value, resources), measured(b, a, value, resources)):
            out[m.key] = m
    return out


def test_describe_and_noise_read_the_agents_host_fields():
    assert describe({}) == "" and noise({}) is None
    text = describe({**QUIET, "host_writeback_max_bytes": 0, "host_dirty_max_bytes": 300 << 20})
    assert text == "steal 0 %, iowait 1 %, other processes 8 % CPU, writeback 0 B (dirty 300 MiB)"
    assert noise(QUIET) is None
    assert noise(BUSY) == "other processes kept 85 % of the CPUs busy"
    assert "steal" in noise({"host_steal_percent": 12.0}) and "flushed" in noise({"host_writeback_max_bytes": 1 << 30})


def test_every_verdict_carries_its_busiest_nodes_context():
    cluster = nodes(3, 0)
    plan = make_plan(parse(SCENARIO, "<t>", METRICS, lambda *_: None).checks, cluster, METRICS)
    first = results({("cp1", "cp2"): 1.0, ("cp1", "cp3"): 1.0, ("cp2", "cp3"): 1.0}, QUIET)
    key = ResultKey("rtt", "cp3", "cp2")
    first[key] = measured("cp3", "cp2", 1.0, BUSY)
    verdicts = {v.subject.nodes: v for v in judge(plan, first, cluster, METRICS)}
    assert (
        verdicts[("cp2", "cp3")].context.startswith("cp3: ")
        and "other processes 85 % CPU" in verdicts[("cp2", "cp3")].context
    )
    assert context_of([first[ResultKey("rtt", "cp1", "cp2")]]) == "cp1: steal 0 %, iowait 1 %, other processes 8 % CPU"


def test_only_fails_measured_on_a_busy_host_are_measured_again_and_both_readings_are_kept():
    cluster = nodes(3, 0)
    plan = make_plan(parse(SCENARIO, "<t>", METRICS, lambda *_: None).checks, cluster, METRICS)
    # cp1-cp2 fails on a quiet host (stands), cp1-cp3 fails on a busy one, cp2-cp3 passes on a busy one
    first = results({("cp1", "cp2"): 30.0}, QUIET) | results({("cp1", "cp3"): 30.0, ("cp2", "cp3"): 1.0}, BUSY)
    verdicts = judge(plan, first, cluster, METRICS)
    again = retry.to_remeasure(verdicts, first, METRICS)
    assert again == {ResultKey("rtt", "cp1", "cp3"), ResultKey("rtt", "cp3", "cp1")}
    assert retry.restricted(plan, again).keys == again
    # measured again on a quiet host: 1 ms, a pass; the first reading stays in the detail
    second = {**first, **results({("cp1", "cp3"): 1.0}, QUIET)}
    merged = {
        v.subject.nodes: v for v in retry.merge(verdicts, judge(plan, second, cluster, METRICS), again, first, METRICS)
    }
    redone = merged[("cp1", "cp3")]
    assert redone.status is Status.PASS
    assert "measured again: first measurement: fail, 30 ms" in redone.detail
    assert "on a busy host (cp1: other processes kept 85 % of the CPUs busy" in redone.detail
    assert merged[("cp1", "cp2")].status is Status.FAIL and "measured again" not in merged[("cp1", "cp2")].detail
    # still failing, still busy: the fail stands and says so
    busy_again = {**first, **results({("cp1", "cp3"): 30.0}, BUSY)}
    stands = {
        v.subject.nodes: v
        for v in retry.merge(verdicts, judge(plan, busy_again, cluster, METRICS), again, first, METRICS)
    }[("cp1", "cp3")]
    assert stands.status is Status.FAIL and "measured again; still on a busy host" in stands.detail


def test_nothing_in_scope_and_passes_ask_for_nothing():
    cluster = nodes(1, 2)  # one control plane: no control-plane pair
    plan = make_plan(parse(SCENARIO, "<t>", METRICS, lambda *_: None).checks, cluster, METRICS)
    verdicts = judge(plan, {}, cluster, METRICS)
    assert [v.status for v in verdicts] == [Status.INFO]
    assert retry.to_remeasure(verdicts, {}, METRICS) == frozenset()
    assert retry.merge(verdicts, verdicts, frozenset(), {}, METRICS) == verdicts
