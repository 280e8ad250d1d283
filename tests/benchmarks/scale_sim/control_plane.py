"""The scale benchmark's control plane: a one-node lab (bench/lab: its namespace, removed with
it) whose namespace runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler from
bench/lab/kube_control.py's command lines, less the lab kubelet (the simulator is every kubelet),
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

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.errors import InfrastructureError
from talbench.bench.lab import kube_control, kube_files, processes
from talbench.bench.lab.kube_binaries import KUBERNETES_VERSION, locate
from talbench.bench.lab.kube_control import API_PORT, KubeLab
from talbench.bench.lab.kube_pki import LabPki, make_pki
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabState

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
    binaries = locate()
    node = state.nodes[0]
    directory = state.lab_dir / kube_control.DIRECTORY
    directory.mkdir(mode=0o700)
    pki = make_pki(directory / "pki", state.lab_id, (node.address,))
    token = kube_files.write_token_file(directory / "tokens.csv")
    nobody = directory / "nobody.token"
    nobody.write_text(token + "\n")
    inside = f"https://127.0.0.1:{API_PORT}"
    cluster = f"talbench-{state.lab_id}"
    for name, pair in (("controller-manager", pki.controller_manager), ("scheduler", pki.scheduler)):
        config = kube_files.kubeconfig(inside, pki.ca, pair, cluster=cluster, user=f"system:kube-{name}")
        kube_files.write_kubeconfig(directory / f"{name}.kubeconfig", config)
    kube_files.write_admission_config(directory / "admission.yaml")
    policy = directory / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    audit_log = directory / AUDIT_LOG
    sim_kubeconfig = directory / SIM_KUBECONFIG
    kube_files.write_kubeconfig(
        sim_kubeconfig,
        kube_files.kubeconfig(inside, pki.ca, pki.kubelet_client, cluster=cluster, user="scale-sim"),
    )

    pids: dict[str, int] = {}
    kube = KubeLab(
        lab_id=state.lab_id,
        directory=directory,
        kubeconfig=state.lab_dir / kube_control.KUBECONFIG,
        server="",
        node=node.name,
        namespace=node.namespace,
        version=KUBERNETES_VERSION,
        pids=pids,
        nobody_token_file=nobody,
    )

    def launch(name: str, argv: list[str]) -> None:
        pids[name] = processes.spawn(ip.exec_argv(node.namespace, argv), directory / f"{name}.log")
        kube.save()

    audit = [f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}", "--audit-log-format=json"]
    launch("etcd", kube_control._etcd_argv(binaries, directory, pki, node))
    launch("kube-apiserver", kube_control._apiserver_argv(binaries, directory, pki, node) + audit)
    port = kube_control._start_forwarder(state, node, directory, pids)
    kube = dataclasses.replace(kube, server=f"https://127.0.0.1:{port}")
    kube.save()
    admin = kube_files.kubeconfig(kube.server, pki.ca, pki.admin, cluster=cluster, user="admin")
    kube_files.write_kubeconfig(kube.kubeconfig, admin)

    deadline = time.monotonic() + ready_timeout
    kube_control._wait(kube, binaries, deadline, "the API server to be ready", "get", "--raw=/readyz")
    grace = [f"--node-monitor-grace-period={NODE_GRACE}", f"--node-startup-grace-period={NODE_GRACE}"]
    # One instance each and nothing restarts them: without leader election, an API server too
    # busy to answer a lease renewal within 5 s (1,000 nodes on 2 cores) does not make them exit.
    single = ["--leader-elect=false"]  # the last occurrence of a flag wins
    cm_argv = kube_control._controller_manager_argv(binaries, directory, pki, cluster) + grace + single
    launch("kube-controller-manager", cm_argv)
    launch("kube-scheduler", kube_control._scheduler_argv(binaries, directory) + single)
    kube_control._wait(
        kube, binaries, deadline, "the default service account", "-n", "default", "get", "serviceaccount", "default"
    )
    return ControlPlane(dataclasses.replace(kube, pids=dict(pids)), pki, sim_kubeconfig, audit_log)


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
