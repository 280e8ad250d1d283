"""The cluster's facts read from the Kubernetes API's objects: v1 Node and Pod objects and the
server's /version answer become the records of bench/cluster_facts.py."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.bench.cluster_facts import ClusterFacts, NodeFacts, PodPlacement
from talbench.bench.model import CONTROL_PLANE_LABEL, Role

LEGACY_MASTER_LABEL = "node-role.kubernetes.io/master"

_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_k8s_quantity(text: object) -> float | None:
    """``"4"`` -> 4, ``"3800m"`` -> 3.8, ``"8039048Ki"`` -> bytes; None when unparseable."""
    match = _QUANTITY.match(str(text or "").strip())
    if not match or match.group(2) not in _SUFFIX:
        return None
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _taint_text(taint: Mapping[str, Any]) -> str:
    key, value, effect = taint.get("key", ""), taint.get("value"), taint.get("effect", "")
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def node_facts(obj: Mapping[str, Any]) -> NodeFacts:
    """A NodeFacts from a v1 Node object."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    role = Role.CONTROL_PLANE if CONTROL_PLANE_LABEL in labels or LEGACY_MASTER_LABEL in labels else Role.WORKER
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or () if isinstance(a, dict)}
    address = addresses.get("InternalIP") or addresses.get("ExternalIP") or ""
    capacity = status.get("capacity") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or () if isinstance(c, dict)}
    info = status.get("nodeInfo") or {}
    return NodeFacts(
        name=str(meta.get("name", "")),
        role=role,
        address=str(address),
        labels=labels,
        taints=tuple(_taint_text(t) for t in spec.get("taints") or () if isinstance(t, dict)),
        cpu_cores=parse_k8s_quantity(capacity.get("cpu")),
        memory_bytes=parse_k8s_quantity(capacity.get("memory")),
        ready=conditions.get("Ready") == "True",
        unschedulable=bool(spec.get("unschedulable")),
        kubelet_version=str(info.get("kubeletVersion", "")),
        os_image=str(info.get("osImage", "")),
        kernel=str(info.get("kernelVersion", "")),
    )


def pod_placement(obj: Mapping[str, Any]) -> PodPlacement:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    owners = meta.get("ownerReferences") or ()
    controller = next((o for o in owners if isinstance(o, dict) and o.get("controller")), owners[0] if owners else {})
    annotations = meta.get("annotations") or {}
    return PodPlacement(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        node=str(spec.get("nodeName", "")),
        owner_kind=str(controller.get("kind", "")) if isinstance(controller, dict) else "",
        mirror="kubernetes.io/config.mirror" in annotations
        or (isinstance(controller, dict) and controller.get("kind") == "Node"),
        phase=str(status.get("phase", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
    )


def cluster_facts(
    version: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]] | None
) -> ClusterFacts:
    """ClusterFacts from the raw API answers (``pods``: those on control planes, or None)."""
    found = tuple(sorted((node_facts(n) for n in nodes), key=lambda n: n.name))
    return ClusterFacts(
        server_version=str(version.get("gitVersion", "")),
        nodes=found,
        control_plane_pods=None if pods is None else tuple(pod_placement(p) for p in pods),
    )
