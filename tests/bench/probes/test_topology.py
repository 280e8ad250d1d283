"""Topology rules judged on cluster shapes that pass and fail each rule (no cluster needed)."""

from __future__ import annotations

import pytest

from talbench.bench.cluster_facts import ClusterFacts, NodeFacts, PodPlacement
from talbench.bench.errors import ScenarioError
from talbench.bench.judge import judge_subject
from talbench.bench.model import CLUSTER_NODE, Check, Measurement, Role, Scope, Status, Subject, SubjectKind
from talbench.bench.probes import default_drivers
from talbench.bench.probes.topology.driver import (
    CLUSTER_KEY,
    DRIVER,
    TopologySettings,
    facts_data,
    facts_from_nodes,
    topology_metrics,
)
from talbench.bench.units import Dimension, parse_quantity
from tests.bench import factories

METRICS = {m.name: m for m in topology_metrics()}
TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"


def shape(
    control_planes: int, workers: int = 2, *, untainted: tuple[str, ...] = (), pods: tuple[PodPlacement, ...] = ()
) -> ClusterFacts:
    nodes = [
        NodeFacts(f"cp{i}", Role.CONTROL_PLANE, f"10.0.0.{i}", taints=() if f"cp{i}" in untainted else (TAINT,))
        for i in range(1, control_planes + 1)
    ]
    nodes += [NodeFacts(f"w{i}", Role.WORKER, f"10.0.1.{i}") for i in range(1, workers + 1)]
    return ClusterFacts("v1.31.4", tuple(nodes), pods)


def verdict(facts: ClusterFacts, metric: str, subject: Subject, *, warn=None, fail=None, settings=None) -> Status:
    settings = settings or TopologySettings()
    m = METRICS[metric]
    dim = m.dimension
    check = Check(
        "c",
        metric,
        Scope.CLUSTER if not subject.nodes else Scope.CONTROL_PLANE_NODES,
        parse_quantity(warn, dim) if warn is not None else None,
        parse_quantity(fail, dim) if fail is not None else None,
        "test",
    )
    results = {CLUSTER_KEY: Measurement(CLUSTER_KEY, True, data=facts_data(facts, settings, "kubernetes-api"))}
    return judge_subject(check, m, subject, results, []).status


WHOLE_CLUSTER = Subject(())


@pytest.mark.parametrize(
    "count, expected",
    [
        (0, Status.FAIL),
        (1, Status.WARN),
        (2, Status.FAIL),
        (3, Status.PASS),
        (4, Status.FAIL),
        (5, Status.WARN),
        (6, Status.FAIL),
        (7, Status.WARN),
    ],
)
def test_control_plane_count_rules(count, expected):
    """3 recommended; even fails; 1 warns (not HA); 5 or more warns (replication overhead)."""
    facts = shape(count)
    statuses = [
        verdict(facts, "topology.control_planes", WHOLE_CLUSTER, warn=5),
        verdict(facts, "topology.control_plane_fault_tolerance", WHOLE_CLUSTER, warn=1),
        verdict(facts, "topology.control_planes_even", WHOLE_CLUSTER, fail=1),
    ]
    worst = next((s for s in (Status.FAIL, Status.WARN) if s in statuses), Status.PASS)
    assert worst is expected, statuses


def test_an_untainted_control_plane_fails_and_a_tainted_one_passes():
    facts = shape(3, untainted=("cp2",))
    assert verdict(facts, "topology.control_plane_untainted", Subject(("cp1",)), fail=1) is Status.PASS
    assert verdict(facts, "topology.control_plane_untainted", Subject(("cp2",)), fail=1) is Status.FAIL


def test_workloads_on_a_control_plane_fail_system_and_daemonset_pods_do_not():
    pods = (
        PodPlacement("kube-system", "kube-apiserver-cp1", "cp1", "Node", mirror=True),
        PodPlacement("kube-system", "cilium-abcde", "cp1", "DaemonSet"),
        PodPlacement("monitoring", "node-exporter-x", "cp1", "DaemonSet"),
        PodPlacement(
            "talbench", "talbench-agent-r-x", "cp1", "DaemonSet", labels={"app.kubernetes.io/managed-by": "talbench"}
        ),
        PodPlacement("shop", "web-7d9f-abc", "cp2", "ReplicaSet"),
        PodPlacement("batch", "done-job-x", "cp3", "Job", phase="Succeeded"),
    )
    facts = shape(3, pods=pods)
    check = lambda node, **kw: verdict(facts, "topology.control_plane_workloads", Subject((node,)), fail=1, **kw)  # noqa: E731
    assert check("cp1") is Status.PASS
    assert check("cp2") is Status.FAIL
    assert check("cp3") is Status.PASS  # a finished job holds nothing
    assert check("cp1", settings=TopologySettings(ignore_daemonsets=False)) is Status.FAIL  # node-exporter counts then


def test_without_the_api_placement_is_invalid_not_a_pass():
    facts = facts_from_nodes(factories.nodes(3, 1))
    assert verdict(facts, "topology.control_plane_workloads", Subject(("cp1",)), fail=1) is Status.INVALID
    assert verdict(facts, "topology.control_planes", WHOLE_CLUSTER, warn=5) is Status.PASS


def test_settings_are_validated():
    assert DRIVER.settings({"system_namespaces": ["kube-system", "rook-ceph"]}, quick=False).system_namespaces == (
        "kube-system",
        "rook-ceph",
    )
    assert DRIVER.settings({}, quick=True) == TopologySettings()  # nothing to scale
    bad_settings = (
        {"system_namespaces": "kube-system"},
        {"system_namespaces": [""]},
        {"system_namespaces": ["Kube System"]},
        {"ignore_daemonsets": "yes"},
        {"nope": 1},
    )
    for bad in bad_settings:
        with pytest.raises(ScenarioError, match=next(iter(bad))):  # the message names the setting
            DRIVER.settings(bad, quick=False)


def test_topology_is_a_coordinator_only_probe_on_the_cluster_wide_subject():
    assert default_drivers()["topology"] is DRIVER and DRIVER.declaration is None
    assert CLUSTER_KEY.node == CLUSTER_NODE


def test_every_metric_reads_the_one_cluster_measurement():
    for metric in METRICS.values():
        subject = WHOLE_CLUSTER if metric.kind is SubjectKind.CLUSTER else Subject(("cp1",))
        assert metric.keys_for(subject) == (CLUSTER_KEY,)
        assert metric.dimension is Dimension.COUNT
