"""The bounded probing plan: control-plane pairs all measured, every other node's pairs under a
budget independent of the cluster's size, chosen by hashed names (stable from run to run), every
node and every pair of zones covered, and what is left out reported as info, never no_data."""

from __future__ import annotations

import time

from talbench.bench import scenario
from talbench.bench.judge import judge
from talbench.bench.model import Node, Scope, Status
from talbench.bench.plan import make_plan, select_checks, subjects
from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of
from talbench.bench.sampling import SAMPLED, ZONE_COVER, ZONE_LABEL, node_load, sample_pairs
from tests.bench.factories import nodes

METRICS = metrics_of(default_drivers())
CONTROL_PLANE = scenario.load(scenario.resolve("control-plane"), METRICS)
RTT_CHECKS = select_checks(CONTROL_PLANE, ["rtt"])


def others(cluster: tuple[Node, ...]) -> list[tuple[str, str]]:
    return [(s.nodes[0], s.nodes[1]) for s in subjects(Scope.OTHER_PAIRS, cluster)]


def test_a_small_cluster_is_measured_whole():
    cluster = nodes(3, 1)
    assert make_plan(RTT_CHECKS, cluster, METRICS, {"rtt": 6}).keys == make_plan(RTT_CHECKS, cluster, METRICS).keys
    assert make_plan(RTT_CHECKS, cluster, METRICS, {"rtt": 6}).sampled_out == {}


def test_every_node_has_pairs_under_its_budget_and_every_control_plane_pair_is_kept():
    cluster = nodes(3, 37)
    plan = make_plan(RTT_CHECKS, cluster, METRICS, {"rtt": 6})
    sample = plan.samples["rtt"]
    load = node_load(sample.chosen)
    assert set(load) == {n.name for n in cluster}, "a node without any measured pair"
    assert max(load.values()) <= 6  # the budget
    assert sum(load.values()) >= 0.9 * 6 * len(cluster)  # nearly everyone uses its budget
    cp = {s.nodes for s in subjects(Scope.CONTROL_PLANE_PAIRS, cluster)}
    planned = {s.nodes for check, found in plan.subjects for s in found}
    assert cp <= planned
    # directed keys: both directions of every control-plane pair and of every chosen pair
    assert len(plan.keys_of("rtt")) == 2 * (len(cp) + len(sample.chosen))
    assert plan.sampled_out["worker-rtt"] == len(others(cluster)) - len(sample.chosen) > 0


def test_the_choice_is_stable_from_run_to_run_and_when_a_node_joins():
    cluster = nodes(3, 37)
    first = sample_pairs(cluster, 6).chosen
    assert sample_pairs(tuple(reversed(cluster)), 6).chosen == first
    grown = nodes(3, 38)
    kept = set(first) & set(sample_pairs(grown, 6).chosen)
    assert len(kept) >= len(first) - 6  # only the pairs around the new node on the ring change


def test_every_pair_of_zones_is_covered():
    zones = ("a", "b", "c", "d")
    cluster = tuple(
        Node(n.name, n.role, n.address, {**n.labels, ZONE_LABEL: zones[i % len(zones)]})
        for i, n in enumerate(nodes(3, 57))
    )
    sample = sample_pairs(cluster, 3)
    zone = {n.name: n.labels[ZONE_LABEL] for n in cluster}
    crossed = {tuple(sorted((zone[a], zone[b]))) for a, b in sample.chosen if zone[a] != zone[b]}
    assert crossed == {(x, y) for x in zones for y in zones if x < y}
    assert sum(1 for why in sample.chosen.values() if why == ZONE_COVER) == 6
    assert SAMPLED in sample.chosen.values()


def test_pairs_left_out_are_one_info_verdict_per_check_never_no_data():
    cluster = nodes(3, 20)
    plan = make_plan(RTT_CHECKS, cluster, METRICS, {"rtt": 4})
    verdicts = judge(plan, {}, cluster, METRICS)
    left_out = [v for v in verdicts if v.message.startswith("not measured:")]
    assert [v.check for v in left_out] == ["worker-rtt"]
    assert (
        left_out[0].status is Status.INFO
        and f"{plan.sampled_out['worker-rtt']} pairs sampled out" in left_out[0].message
    )
    assert "at most 4 peers" in left_out[0].message
    # the measured subjects without results are no_data, as always
    assert {v.status for v in verdicts if v not in left_out} == {Status.NO_DATA}


def test_a_thousand_nodes_plan_in_bounded_size_and_time():
    cluster = nodes(3, 997)
    started = time.process_time()
    plan = make_plan(RTT_CHECKS, cluster, METRICS, {"rtt": 6})
    assert time.process_time() - started < 5  # linear: the ring, never the 498,500 candidates
    assert len(plan.keys_of("rtt")) <= 2 * (3 + 7 * 1000 // 2)  # linear in N, not N squared
    assert max(node_load(plan.samples["rtt"].chosen).values()) <= 6  # no zones here: no cover pairs
    assert plan.samples["rtt"].candidates == 1000 * 999 // 2 - 3


def test_the_budget_is_a_declared_rtt_setting():
    settings = default_drivers()["rtt"].settings({"max_peers": 3}, quick=False)
    assert default_drivers()["rtt"].pair_budget(settings) == 3
    assert default_drivers()["fsync"].pair_budget(default_drivers()["fsync"].settings({}, quick=False)) is None
