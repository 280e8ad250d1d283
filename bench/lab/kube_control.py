"""A real Kubernetes control plane on the lab (``talbench lab up --kubernetes``): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler as lab processes in the first control
plane's namespace (so the API server reaches every node address), and a loopback forwarder that
is the only way in from the root namespace (bench/lab/kube_forward.py).

    start(ip, state, ...) -> KubeLab     (raises MissingDependency, InfrastructureError)
    load(lab_dir)         -> KubeLab | None
    component_status(kube) -> {component: "running" | why not}

Everything lives under ``<lab_dir>/kubernetes/`` (PKI, configuration, etcd's data, logs, this
module's ``kubernetes.json``) plus the admin kubeconfig ``<lab_dir>/kubeconfig``; every process
runs in (or, the forwarder, has joined) a lab namespace.  ``lab down`` therefore removes all of
it with the lab: it ends every process of the lab's namespaces and deletes the lab directory.
The caller (bench/lab/lab.py ``up``) removes the lab when ``start`` fails.

``lab up`` talks to the API only through kubectl (``make kubernetes`` builds it): the Python
client belongs to bench/kube.  The lab kubelet (bench/lab/kubelet.py, started here once the Nodes
are registered) makes its own few calls, as each node (bench/lab/kubelet_api.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from talbench.bench.errors import InfrastructureError
from talbench.bench.lab import kube_files, kube_nodes, kubelet_config, processes
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.kube_binaries import KUBERNETES_VERSION, KubeBinaries, locate
from talbench.bench.lab.kube_pki import LabPki, make_pki
from talbench.bench.lab.launch import python_env
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.oci_image import Image
from talbench.bench.lab.state import LabNode, LabState
from talbench.bench.model import Role

FORWARD_MODULE = "talbench.bench.lab.kube_forward"
KUBELET_MODULE = "talbench.bench.lab.kubelet"
DIRECTORY = "kubernetes"
STATE_FILE = "kubernetes.json"
KUBECONFIG = "kubeconfig"  # <lab_dir>/kubeconfig: the admin's
API_PORT = 6443
ETCD_CLIENT_PORT = 2379  # Talos' ports, on the control plane's loopback (the scratch cluster uses 12379)
ETCD_PEER_PORT = 2380
SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_READY_TIMEOUT = 180.0  # a cold kube-apiserver on a loaded 2-core machine takes tens of seconds
KUBECTL_TIMEOUT = 10.0
COMPONENTS = ("etcd", "kube-apiserver", "forwarder", "kube-controller-manager", "kube-scheduler", "kubelet")
LEADER_LEASES = ("kube-controller-manager", "kube-scheduler")
# The lab runs one controller manager and one scheduler, and nothing restarts them: a component
# that cannot renew its lease within the renew deadline exits (as upstream does, for its static
# pod to be restarted).  At the defaults (15 s lease, 10 s deadline, 2 s retry) one slow GET on a
# saturated 2-core host ended them midway through a 1,000-pod rollout; with one candidate there is
# no one to fail over to, so the lab waits much longer before giving up the lease.
LEADER_ELECTION_TIMING = (
    "--leader-elect-lease-duration=120s",
    "--leader-elect-renew-deadline=100s",
    "--leader-elect-retry-period=5s",
)
STOP_ORDER = ("kubelet", "kube-scheduler", "kube-controller-manager", "forwarder", "kube-apiserver", "etcd")


@dataclass(frozen=True)
class KubeLab:
    lab_id: str
    directory: Path  # <lab_dir>/kubernetes
    kubeconfig: Path
    server: str  # https://127.0.0.1:<port>: the forwarder, in the root namespace
    node: str  # the control plane whose namespace runs the control plane
    namespace: str
    version: str
    pids: Mapping[str, int]
    nobody_token_file: Path  # a token the API server authenticates and RBAC refuses

    def to_json(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "node": self.node,
            "namespace": self.namespace,
            "version": self.version,
            "pids": dict(self.pids),
            "nobody_token_file": str(self.nobody_token_file),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], directory: Path) -> KubeLab:
        return cls(
            lab_id=str(data["lab_id"]),
            directory=directory,
            kubeconfig=Path(data["kubeconfig"]),
            server=str(data["server"]),
            node=str(data["node"]),
            namespace=str(data["namespace"]),
            version=str(data["version"]),
            pids={str(k): int(v) for k, v in data["pids"].items()},
            nobody_token_file=Path(data["nobody_token_file"]),
        )

    def save(self) -> None:
        lab_state.write_json_atomic(self.directory / STATE_FILE, self.to_json(), mode=0o600)


def load(lab_dir: Path) -> KubeLab | None:
    """The lab's control plane as ``start`` recorded it; None for a lab without one (or an
    unreadable record)."""
    directory = lab_dir / DIRECTORY
    try:
        return KubeLab.from_json(json.loads((directory / STATE_FILE).read_text()), directory)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_pids(lab_dir: Path) -> tuple[int, ...]:
    kube = load(lab_dir)
    return tuple(kube.pids.values()) if kube else ()


def stop(ip: Ip, lab_dir: Path, *, term_timeout: float) -> tuple[int, ...]:
    """Stop the lab's control plane in order, clients before servers (all at once, kube-apiserver
    waits out its grace for an etcd that is gone: seconds instead of one), each bounded; only
    recorded pids that are still processes of the control plane's namespace are signalled.
    Returns the pids stopped; the lab's namespace sweep ends anything else."""
    kube = load(lab_dir)
    if kube is None:
        return ()
    present = set(ip.netns_pids(kube.namespace))
    stopped: list[int] = []
    for name in STOP_ORDER:
        pid = kube.pids.get(name)
        if pid is not None and pid in present:
            processes.terminate([pid], term_timeout=term_timeout)
            stopped.append(pid)
    return tuple(stopped)


def component_status(kube: KubeLab) -> dict[str, str]:
    return {name: ("running" if processes.alive(pid) else "not running") for name, pid in kube.pids.items()}


def start(
    ip: Ip, state: LabState, *, ready_timeout: float = DEFAULT_READY_TIMEOUT, images: Sequence[Image] = ()
) -> KubeLab:
    """Start the control plane on ``state``'s first control plane, register the lab's nodes,
    start the lab kubelet (bench/lab/kubelet.py; it has ``images``), and wait (bounded) until
    the API server is ready, the controller manager and the scheduler hold their leases and
    every node is Ready."""
    binaries = locate()
    node = next((n for n in state.nodes if n.role is Role.CONTROL_PLANE), None)
    if node is None:
        raise InfrastructureError("the Kubernetes lab needs a control plane node")
    directory = state.lab_dir / DIRECTORY
    directory.mkdir(mode=0o700)
    pki = make_pki(directory / "pki", state.lab_id, (node.address,))
    token = kube_files.write_token_file(directory / "tokens.csv")
    nobody = directory / "nobody.token"
    nobody.write_text(token + "\n")
    nobody.chmod(0o600)
    inside = f"https://127.0.0.1:{API_PORT}"
    cluster = f"talbench-{state.lab_id}"
    for name, pair in (("controller-manager", pki.controller_manager), ("scheduler", pki.scheduler)):
        config = kube_files.kubeconfig(inside, pki.ca, pair, cluster=cluster, user=f"system:kube-{name}")
        kube_files.write_kubeconfig(directory / f"{name}.kubeconfig", config)
    kube_files.write_admission_config(directory / "admission.yaml")

    pids: dict[str, int] = {}
    kube = KubeLab(
        lab_id=state.lab_id,
        directory=directory,
        kubeconfig=state.lab_dir / KUBECONFIG,
        server="",
        node=node.name,
        namespace=node.namespace,
        version=KUBERNETES_VERSION,
        pids=pids,
        nobody_token_file=nobody,
    )

    def launch(name: str, argv: Sequence[str]) -> None:
        pids[name] = processes.spawn(ip.exec_argv(node.namespace, argv), directory / f"{name}.log")
        kube.save()  # each pid on record as soon as it exists

    launch("etcd", _etcd_argv(binaries, directory, pki, node))
    launch("kube-apiserver", _apiserver_argv(binaries, directory, pki, node))
    port = _start_forwarder(state, node, directory, pids)
    kube = _with(kube, server=f"https://127.0.0.1:{port}")
    kube.save()
    admin = kube_files.kubeconfig(kube.server, pki.ca, pki.admin, cluster=cluster, user="admin")
    kube_files.write_kubeconfig(kube.kubeconfig, admin)

    deadline = time.monotonic() + ready_timeout
    _wait(kube, binaries, deadline, "the API server to be ready", "get", "--raw=/readyz")
    launch("kube-controller-manager", _controller_manager_argv(binaries, directory, pki, cluster))
    launch("kube-scheduler", _scheduler_argv(binaries, directory))
    _kubectl(binaries, kube, "apply", "-f", "-", stdin=kube_nodes.manifest(state.nodes))
    kubelet = kubelet_config.prepare(
        state.lab_id,
        directory,
        server=inside,
        api_endpoint=f"{node.address}:{API_PORT}",
        ca=(pki.ca.cert, pki.ca.key),
        version=KUBERNETES_VERSION,
        nodes=state.nodes,
        images=images,
    )
    # joins the namespace itself (setns, as the forwarder does): ``ip netns exec`` would remount
    # /sys and hide the cgroup hierarchies runc needs
    netns = f"/run/netns/{node.namespace}"
    argv = [sys.executable, "-m", KUBELET_MODULE, "--config", str(kubelet), "--netns", netns]
    pids["kubelet"] = processes.spawn(argv, directory / "kubelet.log", env=python_env())
    kube.save()
    for lease in LEADER_LEASES:
        _wait(kube, binaries, deadline, f"{lease} to hold its lease", "-n", "kube-system", "get", "lease", lease)
    _wait(
        kube,
        binaries,
        deadline,
        "the nodes to be Ready",
        "wait",
        "--for=condition=Ready",
        "nodes",
        "--all",
        "--timeout=5s",
    )
    return _with(kube, pids=dict(pids))


def _with(kube: KubeLab, **changes: Any) -> KubeLab:
    return replace(kube, **changes)


def _start_forwarder(state: LabState, node: LabNode, directory: Path, pids: dict[str, int]) -> int:
    """Bind 127.0.0.1:0 here (the root namespace), hand the socket to the forwarder, which joins
    the node's namespace and connects to the API server there."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = int(listener.getsockname()[1])
        listener.set_inheritable(True)
        argv = [
            sys.executable,
            "-m",
            FORWARD_MODULE,
            "--listen-fd",
            str(listener.fileno()),
            "--netns",
            f"/run/netns/{node.namespace}",
            "--to",
            f"{node.address}:{API_PORT}",
        ]
        pids["forwarder"] = processes.spawn(argv, directory / "forwarder.log", env=python_env())
    finally:
        listener.close()  # the forwarder holds its own copy
    return port


def _kubectl(binaries: KubeBinaries, kube: KubeLab, *args: str, stdin: str | None = None) -> str:
    """Run kubectl against the lab with the admin kubeconfig (through the forwarder, the way a
    user comes in); InfrastructureError with kubectl's own one-line message on failure."""
    argv = [str(binaries.kubectl), "--kubeconfig", str(kube.kubeconfig), "--request-timeout=8s", *args]
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfrastructureError(f"kubectl {' '.join(args[:3])}: no answer within {KUBECTL_TIMEOUT:g}s") from exc
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        raise InfrastructureError(f"kubectl {' '.join(args[:3])}: {lines[-1]}")
    return done.stdout


def _wait(kube: KubeLab, binaries: KubeBinaries, deadline: float, what: str, *kubectl_args: str) -> None:
    """Run kubectl ``kubectl_args`` until it succeeds or ``deadline``; a component that exits
    ends the wait with its log's last lines."""
    last = "no answer yet"
    while True:
        for name, pid in kube.pids.items():
            if not processes.alive(pid):
                processes.reap(pid)
                tail = processes.log_tail(kube.directory / f"{name}.log", 2)
                raise InfrastructureError(f"{name} exited while waiting for {what}: {tail or 'no output'}")
        try:
            _kubectl(binaries, kube, *kubectl_args)
            return
        except InfrastructureError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise InfrastructureError(f"Kubernetes lab: timed out waiting for {what}: {last}")
        time.sleep(0.5)


def _etcd_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, node: LabNode) -> list[str]:
    client = f"https://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return [
        str(binaries.etcd),
        f"--name={node.name}",
        f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={node.name}={peer}",
        f"--cert-file={pki.etcd_server.cert}",
        f"--key-file={pki.etcd_server.key}",
        f"--trusted-ca-file={pki.ca.cert}",
        "--client-cert-auth=true",
        # The lab's API store is not what talbench measures (the scratch cluster is): no fsync, so
        # it does not load the disk the fsync and etcd probes measure on this machine.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def _apiserver_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, node: LabNode) -> list[str]:
    return [
        str(binaries.apiserver),
        f"--advertise-address={node.address}",
        "--bind-address=0.0.0.0",  # inside the node's namespace: its address and loopback
        f"--secure-port={API_PORT}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--token-auth-file={directory / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--admission-control-config-file={directory / 'admission.yaml'}",
        "--allow-privileged=true",
        f"--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--etcd-cafile={pki.ca.cert}",
        f"--etcd-certfile={pki.etcd_client.cert}",
        f"--etcd-keyfile={pki.etcd_client.key}",
        f"--kubelet-client-certificate={pki.kubelet_client.cert}",
        f"--kubelet-client-key={pki.kubelet_client.key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        "--v=1",
    ]


def _controller_manager_argv(binaries: KubeBinaries, directory: Path, pki: LabPki, cluster: str) -> list[str]:
    kubeconfig = directory / "controller-manager.kubeconfig"
    return [
        str(binaries.controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={directory / 'controller-manager-serving'}",
        f"--cluster-name={cluster}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--leader-elect=true",
        *LEADER_ELECTION_TIMING,
        "--profiling=false",
        "--v=1",
    ]


def _scheduler_argv(binaries: KubeBinaries, directory: Path) -> list[str]:
    kubeconfig = directory / "scheduler.kubeconfig"
    return [
        str(binaries.scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={directory / 'scheduler-serving'}",
        "--leader-elect=true",
        *LEADER_ELECTION_TIMING,
        "--profiling=false",
        "--v=1",
    ]
