"""The scale benchmark's control plane: a one-node lab (bench/lab: its namespace, removed with
it) whose namespace runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
testbed/kubelab/control/plane.py's command lines, less the lab kubelet (the simulator is every kubelet),
plus two things for the benchmark:

* kube-apiserver writes an audit log (metadata only, one line per finished request), so that the
  coordinator's requests (user ``admin``) are told from the simulator's and the controllers';
* kube-controller-manager allows an hour without node heartbeats (``--node-monitor-grace-period``),
  so the simulator renews no Leases (a thousand kubelets would renew one every 10 s each);
* the controller manager and the scheduler run without leader election: with it, both exited
  during the 1,000-node DaemonSet rollout (a lease renewal not answered within 5 s) and nothing
  restarts them here (a kubelet would on Talos).

The simulated node addresses are /32s on the namespace's loopback: the API server's pod proxy
reaches them, nothing in the root namespace does (the lab's forwarder is the only way in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.errors import InfrastructureError
from talbench.bench.lab import processes
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabState
from testbed.kubelab.control import files as kube_files
from testbed.kubelab.control import plane as kube_control
from testbed.kubelab.control.pki import LabPki
from testbed.kubelab.control.plane import KubeLab

from .nodes import address

NODE_GRACE = "3600s"
SIM_KUBECONFIG = "scale-sim.kubeconfig"
AUDIT_LOG = "audit.log"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}


@dataclass(frozen=True)
class ControlPlane:
    kube: KubeLab
    pki: LabPki
    sim_kubeconfig: Path
    audit_log: Path

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.kube.namespace}"


def start(ip: Ip, state: LabState, *, ready_timeout: float = 240.0) -> ControlPlane:
    """testbed/kubelab/control/plane.py's control plane with the benchmark's flags (above), then the
    simulator's kubeconfig; returns once the default service account exists."""
    node = state.nodes[0]
    policy = state.lab_dir / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    audit_log = state.lab_dir / AUDIT_LOG
    grace = (f"--node-monitor-grace-period={NODE_GRACE}", f"--node-startup-grace-period={NODE_GRACE}")
    # One instance each and nothing restarts them: without leader election, an API server too
    # busy to answer a lease renewal (1,000 nodes on 2 cores) does not make them exit.
    single = ("--leader-elect=false",)
    extra = kube_control.ExtraArgs(
        apiserver=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}", "--audit-log-format=json"),
        controller_manager=grace + single,
        scheduler=single,
    )
    deadline = time.monotonic() + ready_timeout
    plane = kube_control.start_control_plane(ip, state, node, deadline, extra=extra)
    sim_kubeconfig = plane.kube.directory / SIM_KUBECONFIG
    config = kube_files.kubeconfig(
        plane.inside, plane.pki.ca, plane.pki.kubelet_client, cluster=plane.cluster, user="scale-sim"
    )
    kube_files.write_kubeconfig(sim_kubeconfig, config)
    kube_control.wait_for(
        plane.kube,
        plane.binaries,
        deadline,
        "the default service account",
        "-n",
        "default",
        "get",
        "serviceaccount",
        "default",
    )
    return ControlPlane(plane.kube, plane.pki, sim_kubeconfig, audit_log)


def add_addresses(ip: Ip, namespace: str, count: int) -> None:
    """The first ``count`` simulated node addresses, as /32s on the namespace's loopback."""
    ip.batch([f"address add {address(i)}/32 dev lo" for i in range(count)], netns=namespace)


def alive(plane: ControlPlane) -> None:
    """InfrastructureError naming a control-plane process that has exited."""
    for name, pid in plane.kube.pids.items():
        if not processes.alive(pid):
            tail = processes.log_tail(plane.kube.directory / f"{name}.log", 3)
            raise InfrastructureError(f"{name} exited: {tail or 'no output'}")


def audit_lines(path: Path, offset: int) -> tuple[Iterator[dict[str, Any]], int]:
    """The audit events written after byte ``offset``, and the new end offset."""
    size = path.stat().st_size if path.exists() else 0

    def events() -> Iterator[dict[str, Any]]:
        if size <= offset:
            return
        with path.open("rb") as handle:
            handle.seek(offset)
            for line in handle.read(size - offset).splitlines():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    return events(), size
