"""The scale simulator's Node objects: 3 control planes (Talos' labels and the control-plane
NoSchedule taint, bench/lab/kube_nodes.py's builder) and N - 3 workers, with node addresses in
SIM_NETWORK (only on the loopback of the lab namespace the API server runs in) and zones
(``topology.kubernetes.io/zone``) on all but every tenth worker."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.lab import kube_nodes
from talbench.bench.lab.kube_binaries import KUBERNETES_VERSION
from talbench.bench.lab.state import LabNode
from talbench.bench.model import CONTROL_PLANE_LABEL, Role

SIM_NETWORK = ipaddress.IPv4Network("10.250.0.0/16")  # not the lab's 10.213.0.0/16
HOSTS_PER_OCTET = 200
CONTROL_PLANES = 3
ZONES = ("zone-a", "zone-b", "zone-c")
ZONE_LABEL = "topology.kubernetes.io/zone"
SIM_LABEL = "talbench.io/scale-sim"  # value: the simulation id; every simulated Node carries it
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"
CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass(frozen=True)
class SimNode:
    name: str
    role: Role
    address: str
    zone: str | None


def address(index: int) -> str:
    """The ``index``-th simulated node address (0-based): 10.250.<i // 200>.<i % 200 + 10>."""
    return str(SIM_NETWORK.network_address + (index // HOSTS_PER_OCTET) * 256 + index % HOSTS_PER_OCTET + 10)


def sim_nodes(sim_id: str, count: int) -> tuple[SimNode, ...]:
    if count < CONTROL_PLANES:
        raise ValueError(f"at least {CONTROL_PLANES} nodes")
    out = []
    zone: str | None
    for i in range(count):
        if i < CONTROL_PLANES:
            name, role, zone = f"{sim_id}-cp{i + 1}", Role.CONTROL_PLANE, ZONES[i % len(ZONES)]
        else:
            w = i - CONTROL_PLANES + 1
            name, role = f"{sim_id}-w{w:04d}", Role.WORKER
            zone = None if w % 10 == 0 else ZONES[w % len(ZONES)]
        out.append(SimNode(name, role, address(i), zone))
    return tuple(out)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(node: SimNode, sim_id: str) -> dict[str, Any]:
    """The Node as a kubelet registers it, Ready from the start (the simulator does not renew
    Leases: the controller manager runs with a node-monitor grace period longer than a run)."""
    labels = {"kubernetes.io/hostname": node.name, SIM_LABEL: sim_id}
    if node.role is Role.CONTROL_PLANE:
        labels[CONTROL_PLANE_LABEL] = ""
    if node.zone:
        labels[ZONE_LABEL] = node.zone
    lab_node = LabNode(
        name=node.name,
        role=node.role,
        namespace="",
        address=node.address,
        port=0,
        labels=labels,
        taints=(CONTROL_PLANE_TAINT,) if node.role is Role.CONTROL_PLANE else (),
        node_dir=Path("/nonexistent"),
    )
    obj = kube_nodes.node_object(lab_node)
    now = _now()
    obj["status"].update(
        {
            "capacity": dict(CAPACITY),
            "allocatable": dict(CAPACITY),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "simulated by the talbench scale benchmark",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "osImage": "Talos (simulated)",
                "kernelVersion": "6.12.0-talos",
                "containerRuntimeVersion": "containerd://2.1.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
    )
    return obj
