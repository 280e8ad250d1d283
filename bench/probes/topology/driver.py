"""Reference-architecture topology checks: pure metrics over the cluster's facts.

The facts come from the Kubernetes API (the kube dispatcher puts them in
``Fleet.metadata["kubernetes"]``) or, on a lab, from the Node records and the agents' facts.
The topology driver turns them into one Measurement, ResultKey("topology", CLUSTER_NODE); every
metric below reads that measurement, so the judge stays generic:

    topology.control_planes                count (5 or more: replication overhead)
    topology.control_plane_fault_tolerance control-plane failures etcd survives: floor((n-1)/2)
    topology.control_planes_even           1 when the count is even (2, 4: no gain, more risk)
    topology.control_plane_untainted       per control plane: 1 when it accepts workloads
    topology.control_plane_workloads       per control plane: pods outside system namespaces

Control-plane sizing (cores, memory, disk by worker count) is the node probe's (bench.probes.node,
measured by the agents on the machines themselves); the API's capacity figures are recorded in
run.json with the rest of the facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from talbench.agents.params import Params, param
from talbench.bench.cluster_facts import ClusterFacts, NodeFacts
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import (
    CLUSTER_NODE,
    CONTROL_PLANE_LABEL,
    Measurement,
    Node,
    Observation,
    ResultKey,
    Role,
    Subject,
    SubjectKind,
)
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.units import Dimension

PROBE = "topology"
CLUSTER_KEY = ResultKey(PROBE, CLUSTER_NODE)
SCHEMA_VERSION = 1

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
MAX_NAMESPACES = 100
# a Kubernetes namespace name (an RFC 1123 label)
NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class TopologySettings(Params):
    """The scenario's ``probes.topology`` block (coordinator-only: no agent job)."""

    system_namespaces: tuple[NamespaceName, ...] = param(
        SYSTEM_NAMESPACES,
        sequence=True,
        max_length=MAX_NAMESPACES,
        help="pods in these namespaces are the platform's, not workloads",
    )
    ignore_daemonsets: bool = param(True, help="pods of DaemonSets (CNI, log shippers) are not workloads")


def is_workload(pod: Mapping[str, Any], settings: TopologySettings) -> bool:
    if pod.get("namespace") in settings.system_namespaces or pod.get("mirror"):
        return False
    if pod.get("phase") in ("Succeeded", "Failed"):
        return False
    if settings.ignore_daemonsets and pod.get("owner_kind") == "DaemonSet":
        return False
    return (pod.get("labels") or {}).get("app.kubernetes.io/managed-by") != "talbench"


def facts_data(facts: ClusterFacts, settings: TopologySettings, source: str) -> dict[str, Any]:
    """The raw result of the topology probe: the nodes and, per control plane, its workloads."""
    raw = facts.as_dict()
    workloads: dict[str, list[str]] | None = None
    if raw["control_plane_pods"] is not None:
        workloads = {n.name: [] for n in facts.control_planes}
        for pod in raw["control_plane_pods"]:
            if pod["node"] in workloads and is_workload(pod, settings):
                workloads[pod["node"]].append(f"{pod['namespace']}/{pod['name']}")
    return {
        "schema": SCHEMA_VERSION,
        "source": source,
        "server_version": raw["server_version"],
        "nodes": raw["nodes"],
        "workloads": workloads,
        "system_namespaces": list(settings.system_namespaces),
    }


# ---- metrics: pure functions of the topology measurement --------------------------------------


def _data(measurements: Sequence[Measurement]) -> Mapping[str, Any]:
    return measurements[0].data if measurements else {}


def _control_planes(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [n for n in data.get("nodes") or () if n.get("role") == Role.CONTROL_PLANE.value]


def _node(data: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((n for n in data.get("nodes") or () if n.get("name") == name), None)


def observe_count(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    names = sorted(n["name"] for n in _control_planes(_data(measurements)))
    return Observation(float(len(names)), samples=1, detail=", ".join(names) or "no control-plane node")


def observe_fault_tolerance(
    subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]
) -> Observation:
    count = len(_control_planes(_data(measurements)))
    tolerated = max(0, (count - 1) // 2)
    return Observation(
        float(tolerated), samples=1, detail=f"{count} control planes: quorum survives {tolerated} failure(s)"
    )


def observe_even(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    count = len(_control_planes(_data(measurements)))
    even = count % 2 == 0
    detail = f"{count} control planes" + (" (even: no fault tolerance gained over one fewer)" if even and count else "")
    return Observation(1.0 if even else 0.0, samples=1, detail=detail if count else "no control-plane node")


def _subject_node(subject: Subject, measurements: Sequence[Measurement]) -> Mapping[str, Any] | None:
    return _node(_data(measurements), subject.nodes[0]) if subject.nodes else None


def observe_untainted(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    node = _subject_node(subject, measurements)
    if node is None:
        return Observation(None, invalid=f"{subject} is not among the nodes the API listed")
    blocking = [
        t
        for t in node.get("taints") or ()
        if t.startswith(CONTROL_PLANE_LABEL) and t.endswith((":NoSchedule", ":NoExecute"))
    ]
    if blocking:
        return Observation(0.0, samples=1, detail=f"tainted {blocking[0]}")
    return Observation(
        1.0, samples=1, detail=f"no {CONTROL_PLANE_LABEL}:NoSchedule taint: workloads can be scheduled here"
    )


def observe_workloads(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = _data(measurements)
    workloads = data.get("workloads")
    if workloads is None:
        return Observation(None, invalid="pod placement unknown without the Kubernetes API (target lab)")
    if subject.nodes[0] not in workloads:
        return Observation(None, invalid=f"{subject} is not a control plane the API listed")
    pods = sorted(workloads[subject.nodes[0]])
    shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
    return Observation(float(len(pods)), samples=1, detail=shown or "only system pods", extra={"pods": pods})


def _cluster_key(subject: Subject) -> tuple[ResultKey, ...]:
    return (CLUSTER_KEY,)


def topology_metrics() -> tuple[Metric, ...]:
    cluster, node = SubjectKind.CLUSTER, SubjectKind.NODE
    return (
        Metric(
            "topology.control_planes",
            PROBE,
            cluster,
            Dimension.COUNT,
            True,
            observe_count,
            "number of control-plane nodes (3 recommended; more adds replication overhead)",
            _cluster_key,
        ),
        Metric(
            "topology.control_plane_fault_tolerance",
            PROBE,
            cluster,
            Dimension.COUNT,
            False,
            observe_fault_tolerance,
            "control-plane failures etcd survives with quorum (0: not highly available)",
            _cluster_key,
        ),
        Metric(
            "topology.control_planes_even",
            PROBE,
            cluster,
            Dimension.COUNT,
            True,
            observe_even,
            "1 when the number of control planes is even",
            _cluster_key,
        ),
        Metric(
            "topology.control_plane_untainted",
            PROBE,
            node,
            Dimension.COUNT,
            True,
            observe_untainted,
            "1 when a control plane lacks the NoSchedule taint (accepts workloads)",
            _cluster_key,
        ),
        Metric(
            "topology.control_plane_workloads",
            PROBE,
            node,
            Dimension.COUNT,
            True,
            observe_workloads,
            "pods outside system namespaces running on a control plane",
            _cluster_key,
        ),
    )


# ---- the driver --------------------------------------------------------------------------------


def facts_from_nodes(nodes: Sequence[Node]) -> ClusterFacts:
    """ClusterFacts for a target without a Kubernetes API (the lab): its Node records (roles,
    labels, taints); pod placement unknown."""
    return ClusterFacts(
        server_version="",
        nodes=tuple(NodeFacts(n.name, n.role, n.address, dict(n.labels), n.taints) for n in nodes),
        control_plane_pods=None,
    )


class TopologyDriver(DeclaredDriver[TopologySettings]):
    name = PROBE
    declaration = None  # coordinator-only: the facts come from the API or the Node records
    settings_model = TopologySettings

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: TopologySettings, progress: Progress
    ) -> list[Measurement]:
        if CLUSTER_KEY not in keys:
            return []
        progress.update(PROBE, done=0, total=1, note="reading the cluster's shape")
        raw = fleet.metadata.get("kubernetes")
        if isinstance(raw, Mapping):
            facts, source = ClusterFacts.from_dict(raw), "kubernetes-api"
        else:
            facts, source = facts_from_nodes(fleet.nodes), "nodes"
        progress.update(PROBE, done=1, total=1, note=f"{len(facts.nodes)} nodes")
        return [Measurement(CLUSTER_KEY, True, data=facts_data(facts, settings, source))]

    def cost(self, keys: frozenset[ResultKey], settings: TopologySettings, nodes: Sequence[Node]) -> ProbeCost:
        return ProbeCost(self.name, duration_s=0.0, note="the cluster's shape, read when the agents were deployed")

    def metrics(self) -> Sequence[Metric]:
        return topology_metrics()


DRIVER = TopologyDriver()
