"""The cluster's shape as frozen records with a JSON form: its nodes (role, address, labels,
taints, capacity, versions) and the pods placed on its control planes.

On a Kubernetes target the kube dispatcher reads them from the API once per run (before deploying
agents; bench/kube/facts.py parses the API's objects) and hands them on in
``Fleet.metadata["kubernetes"]``; on a lab the topology driver builds them from the Node records.
The topology driver turns them into a Measurement, so the judge sees these facts exactly like
probe results.  Nothing here talks to the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from talbench.bench.model import Node, Role

SCHEMA_VERSION = 1


def talos_version(os_image: str) -> str | None:
    """``"Talos (v1.8.0)"`` -> ``"v1.8.0"``; None for other operating systems."""
    match = re.match(r"^Talos \((v[^)]+)\)", os_image or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class NodeFacts:
    name: str
    role: Role
    address: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    taints: tuple[str, ...] = ()
    cpu_cores: float | None = None
    memory_bytes: float | None = None
    ready: bool = True
    unschedulable: bool = False
    kubelet_version: str = ""
    os_image: str = ""
    kernel: str = ""

    @property
    def talos_version(self) -> str | None:
        return talos_version(self.os_image)

    def as_node(self) -> Node:
        return Node(self.name, self.role, self.address, dict(self.labels), self.taints)


@dataclass(frozen=True)
class PodPlacement:
    namespace: str
    name: str
    node: str
    owner_kind: str = ""  # DaemonSet, ReplicaSet, Job, "" (bare pod)
    mirror: bool = False  # a static pod of the node (kube-apiserver ...)
    phase: str = "Running"
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ClusterFacts:
    server_version: str
    nodes: tuple[NodeFacts, ...]
    control_plane_pods: tuple[PodPlacement, ...] | None = None  # None: not known

    @property
    def control_planes(self) -> tuple[NodeFacts, ...]:
        return tuple(n for n in self.nodes if n.role is Role.CONTROL_PLANE)

    @property
    def workers(self) -> tuple[NodeFacts, ...]:
        return tuple(n for n in self.nodes if n.role is not Role.CONTROL_PLANE)

    def versions(self) -> dict[str, Any]:
        """Kubernetes and Talos versions, as run.json records them."""
        return {
            "server": self.server_version,
            "kubelet": sorted({n.kubelet_version for n in self.nodes if n.kubelet_version}),
            "talos": sorted({v for n in self.nodes if (v := n.talos_version)}),
            "nodes": {
                n.name: {
                    "kubelet": n.kubelet_version,
                    "os_image": n.os_image,
                    "kernel": n.kernel,
                    "talos": n.talos_version,
                }
                for n in self.nodes
            },
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "server_version": self.server_version,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role.value,
                    "address": n.address,
                    "labels": dict(n.labels),
                    "taints": list(n.taints),
                    "cpu_cores": n.cpu_cores,
                    "memory_bytes": n.memory_bytes,
                    "ready": n.ready,
                    "unschedulable": n.unschedulable,
                    "kubelet_version": n.kubelet_version,
                    "os_image": n.os_image,
                    "kernel": n.kernel,
                }
                for n in self.nodes
            ],
            "control_plane_pods": None
            if self.control_plane_pods is None
            else [
                {
                    "namespace": p.namespace,
                    "name": p.name,
                    "node": p.node,
                    "owner_kind": p.owner_kind,
                    "mirror": p.mirror,
                    "phase": p.phase,
                    "labels": dict(p.labels),
                }
                for p in self.control_plane_pods
            ],
            "versions": self.versions(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ClusterFacts:
        pods = raw.get("control_plane_pods")
        return cls(
            server_version=str(raw.get("server_version") or ""),
            nodes=tuple(
                NodeFacts(
                    name=n["name"],
                    role=Role(n["role"]),
                    address=n.get("address", ""),
                    labels=dict(n.get("labels") or {}),
                    taints=tuple(n.get("taints") or ()),
                    cpu_cores=n.get("cpu_cores"),
                    memory_bytes=n.get("memory_bytes"),
                    ready=bool(n.get("ready", True)),
                    unschedulable=bool(n.get("unschedulable", False)),
                    kubelet_version=n.get("kubelet_version", ""),
                    os_image=n.get("os_image", ""),
                    kernel=n.get("kernel", ""),
                )
                for n in raw.get("nodes") or ()
            ),
            control_plane_pods=None
            if pods is None
            else tuple(
                PodPlacement(
                    p["namespace"],
                    p["name"],
                    p["node"],
                    p.get("owner_kind", ""),
                    bool(p.get("mirror")),
                    p.get("phase", "Running"),
                    dict(p.get("labels") or {}),
                )
                for p in pods
            ),
        )
