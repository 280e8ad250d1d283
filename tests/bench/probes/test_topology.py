"""Topology rules judged on cluster shapes that pass and fail each rule (no cluster needed)."""

from __future__ import annotations

import pytest

from talbench.bench.judge import judge_subject
from talbench.bench.kube.facts import ClusterFacts, NodeFacts, PodPlacement, cluster_facts, parse_k8s_quantity, talos_version
from talbench.bench.probes.topology import CLUSTER_KEY, TopologySettings, facts_data, facts_from_nodes, parse_settings, topology_metrics
from talbench.bench.model import Check, Measurement, Role, Scope, Status, Subject
from talbench.bench.units import Dimension, parse_quantity
from talbench.bench.errors import ScenarioError
from tests.bench import factories

METRICS = {m.name: m for m in topology_metrics()}
TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"


def shape(control_planes: int, workers: int = 2, *, untainted: tuple[str, ...] = (), pods: tuple[PodPlacement, ...] = ()) -> ClusterFacts:
    nodes = [NodeFacts(f"cp{i}", Role.CONTROL_PLANE, f"10.0.0.{i}", taints=() if f"cp{i}" in untainted else (TAINT,))
             for i in range(1, control_planes + 1)]
    nodes += [NodeFacts(f"w{i}", Role.WORKER, f"10.0.1.{i}") for i in range(1, workers + 1)]
    return ClusterFacts("v1.31.4", tuple(nodes), pods)


def verdict(facts: ClusterFacts, metric: str, subject: Subject, *, warn=None, fail=None, settings=TopologySettings()) -> Status:
    m = METRICS[metric]
    dim = m.dimension
    check = Check("c", metric, Scope.CLUSTER if not subject.nodes else Scope.CONTROL_PLANE_NODES,
                  parse_quantity(warn, dim) if warn is not None else None,
                  parse_quantity(fail, dim) if fail is not None else None, "test")
    results = {CLUSTER_KEY: Measurement(CLUSTER_KEY, True, data=facts_data(facts, settings, "kubernetes-api"))}
    return judge_subject(check, m, subject, results, []).status


CLUSTER = Subject(())


@pytest.mark.parametrize("count, expected", [(0, Status.FAIL), (1, Status.WARN), (2, Status.FAIL), (3, Status.PASS),
                                             (4, Status.FAIL), (5, Status.WARN), (6, Status.FAIL), (7, Status.WARN)])
def test_control_plane_count_rules(count, expected):
    """3 recommended; even fails; 1 warns (not HA); 5 or more warns (replication overhead)."""
    facts = shape(count)
    statuses = [
        verdict(facts, "topology.control_planes", CLUSTER, warn=5),
        verdict(facts, "topology.control_plane_fault_tolerance", CLUSTER, warn=1),
        verdict(facts, "topology.control_planes_even", CLUSTER, fail=1),
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
        PodPlacement("talbench", "talbench-agent-r-x", "cp1", "DaemonSet", labels={"app.kubernetes.io/managed-by": "talbench"}),
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
    assert verdict(facts, "topology.control_planes", CLUSTER, warn=5) is Status.PASS


def test_facts_from_api_objects_and_versions():
    node = {
        "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.5.0.2"}],
                   "capacity": {"cpu": "3800m", "memory": "8039048Ki"},
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "nodeInfo": {"kubeletVersion": "v1.31.4", "osImage": "Talos (v1.9.1)", "kernelVersion": "6.12.6-talos"}},
    }
    pod = {"metadata": {"name": "web", "namespace": "shop", "ownerReferences": [{"kind": "ReplicaSet", "controller": True}]},
           "spec": {"nodeName": "cp1"}, "status": {"phase": "Running"}}
    facts = cluster_facts({"gitVersion": "v1.31.4"}, [node], [pod])
    (cp,) = facts.nodes
    assert cp.role is Role.CONTROL_PLANE and cp.address == "10.5.0.2" and cp.taints == (TAINT,)
    assert cp.cpu_cores == pytest.approx(3.8) and cp.memory_bytes == 8039048 * 1024
    assert facts.versions()["talos"] == ["v1.9.1"] and facts.versions()["kubelet"] == ["v1.31.4"]
    assert ClusterFacts.from_dict(facts.as_dict()) == facts
    assert facts.control_plane_pods[0].owner_kind == "ReplicaSet"
    assert parse_k8s_quantity("2Gi") == 2 * 2**30 and parse_k8s_quantity("bogus") is None
    assert talos_version("Ubuntu 22.04") is None


def test_settings_are_validated():
    assert parse_settings({"system_namespaces": ["kube-system", "rook-ceph"]}, quick=False).system_namespaces == ("kube-system", "rook-ceph")
    for bad in ({"system_namespaces": "kube-system"}, {"ignore_daemonsets": "yes"}, {"nope": 1}):
        with pytest.raises(ScenarioError):
            parse_settings(bad, quick=False)


def test_every_metric_reads_the_one_cluster_measurement():
    for metric in METRICS.values():
        subject = CLUSTER if metric.kind.value == "cluster" else Subject(("cp1",))
        assert metric.keys_for(subject) == (CLUSTER_KEY,)
        assert metric.dimension is Dimension.COUNT
