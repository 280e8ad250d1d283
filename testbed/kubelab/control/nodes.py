"""The lab's nodes as Kubernetes Node objects, labelled and tainted as Talos registers them: the
kubelet's well-known labels (hostname, os, arch), on control planes Talos'
``node-role.kubernetes.io/control-plane`` and ``node.kubernetes.io/exclude-from-external-load-balancers``
labels and the ``node-role.kubernetes.io/control-plane:NoSchedule`` taint; the node's lab address
as its InternalIP.

The lab kubelet (testbed/kubelab/kubelet/main.py) then reports each Node's status (Ready, addresses,
capacity) and renews its Lease; it never changes these labels and taints.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Any

import yaml

from talbench.bench.lab.state import LabNode
from talbench.bench.model import Role

EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def labels(node: LabNode) -> dict[str, str]:
    arch = _arch()
    out = {
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/os": "linux",
        **dict(node.labels),
    }
    if node.role is Role.CONTROL_PLANE:
        out[EXCLUDE_FROM_LB_LABEL] = ""
    return out


def taint(text: str) -> dict[str, str]:
    """``key[=value]:Effect`` (how the lab writes taints) as a Node spec taint."""
    key_value, _, effect = text.rpartition(":")
    key, _, value = key_value.partition("=")
    out = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


def node_object(node: LabNode) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if node.taints:
        spec["taints"] = [taint(t) for t in node.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels(node)},
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.address},
                {"type": "Hostname", "address": node.name},
            ]
        },
    }


def manifest(nodes: Iterable[LabNode]) -> str:
    """One YAML document per node (what ``kubectl apply -f -`` reads)."""
    return yaml.safe_dump_all([node_object(n) for n in nodes], sort_keys=False)
