"""The simulated nodes, one description for the emulator and the scale simulator: SimNode and
the Node object it registers as, Ready from the start.

The scale benchmark's set (``sim_nodes``): 3 control planes (Talos' labels and the control-plane
NoSchedule taint, as the lab registers its nodes) and N - 3 workers, with node addresses in
SIM_NETWORK (only on the loopback of the lab namespace the API server runs in) and zones
(``topology.kubernetes.io/zone``) on all but every tenth worker."""

from __future__ import annotations

import datetime
import ipaddress
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talbench.bench.model import CONTROL_PLANE_LABEL
from testbed.kubelab.control.binaries import KUBERNETES_VERSION

SIM_NETWORK = ipaddress.IPv4Network("10.250.0.0/16")  # not the lab's 10.213.0.0/16
HOSTS_PER_OCTET = 200
CONTROL_PLANES = 3
ZONES = ("zone-a", "zone-b", "zone-c")
ZONE_LABEL = "topology.kubernetes.io/zone"
SIM_LABEL = "talbench.io/scale-sim"  # value: the simulation id; every simulated Node carries it
EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
CONTROL_PLANE_TAINT = {"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}
CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass
class SimNode:
    """One simulated node; for the emulator also how to reach its real agent."""

    name: str
    address: str
    control_plane: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    cpu: str = "4"
    memory: str = "8148000Ki"
    workdir: Path | None = None  # where the emulated kubelet keeps volumes and logs; None: no kubelet
    netns: str | None = None  # a lab node: containers run in its network namespace ...
    unix_socket: Path | None = None  # ... and the agent also serves this socket (the proxy's way in)
    failure: str | None = None  # forced on its agent pod: a waiting reason (ImagePullBackOff ...) or Unschedulable
    kubelet_version: str = "v1.31.4"
    os_image: str = "Talos (v1.9.1)"

    @property
    def zone(self) -> str | None:
        return self.labels.get(ZONE_LABEL)

    def as_object(self) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", **self.labels}
        if self.control_plane:
            labels[CONTROL_PLANE_LABEL] = ""
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": list(self.taints)} if self.taints else {},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": self.address},
                    {"type": "Hostname", "address": self.name},
                ],
                "capacity": {"cpu": self.cpu, "memory": self.memory, "pods": "110"},
                "allocatable": {"cpu": self.cpu, "memory": self.memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {
                    "kubeletVersion": self.kubelet_version,
                    "osImage": self.os_image,
                    "kernelVersion": "6.12.6-talos",
                },
            },
        }


# ---- the scale benchmark's nodes -----------------------------------------------------------------


def address(index: int) -> str:
    """The ``index``-th simulated node address (0-based): 10.250.<i // 200>.<i % 200 + 10>."""
    return str(SIM_NETWORK.network_address + (index // HOSTS_PER_OCTET) * 256 + index % HOSTS_PER_OCTET + 10)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def sim_nodes(sim_id: str, count: int) -> tuple[SimNode, ...]:
    """Labelled as the kubelet and Talos label a node (arch, os; on control planes the
    load-balancer exclusion), plus SIM_LABEL and the zone."""
    if count < CONTROL_PLANES:
        raise ValueError(f"at least {CONTROL_PLANES} nodes")
    arch = _arch()
    out = []
    zone: str | None
    for i in range(count):
        control_plane = i < CONTROL_PLANES
        if control_plane:
            name, zone = f"{sim_id}-cp{i + 1}", ZONES[i % len(ZONES)]
        else:
            w = i - CONTROL_PLANES + 1
            name = f"{sim_id}-w{w:04d}"
            zone = None if w % 10 == 0 else ZONES[w % len(ZONES)]
        labels = {
            "beta.kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            SIM_LABEL: sim_id,
        }
        if control_plane:
            labels[EXCLUDE_FROM_LB_LABEL] = ""
        if zone:
            labels[ZONE_LABEL] = zone
        taints = [dict(CONTROL_PLANE_TAINT)] if control_plane else []
        out.append(SimNode(name, address(i), control_plane=control_plane, labels=labels, taints=taints))
    return tuple(out)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(node: SimNode) -> dict[str, Any]:
    """The Node as a kubelet registers it, Ready from the start (the simulator does not renew
    Leases: the controller manager runs with a node-monitor grace period longer than a run)."""
    obj = node.as_object()
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
