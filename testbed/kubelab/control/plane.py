"""A real Kubernetes control plane on the lab (``python -m testbed.kubelab up --kubernetes``): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler as lab processes in the first control
plane's namespace (so the API server reaches every node address), and a loopback forwarder that
is the only way in from the root namespace (testbed/kubelab/control/forward.py).

    start(ip, state, ...) -> KubeLab     (raises MissingDependency, InfrastructureError)
    load(lab_dir)         -> KubeLab | None
    component_status(kube) -> {component: "running" | why not}

Everything lives under ``<lab_dir>/kubernetes/`` (PKI, configuration, etcd's data, logs, this
module's ``kubernetes.json``) plus the admin kubeconfig ``<lab_dir>/kubeconfig``; every process
runs in (or, the forwarder, has joined) a lab namespace.  ``lab down`` therefore removes all of
it with the lab: it stops the components on record (``leftovers``, in order), ends every process
of the lab's namespaces and deletes the lab directory.  The caller (the process lab's ``up``,
through testbed/kubelab/addon.py) removes the lab when ``start`` fails.

``lab up`` talks to the API only through kubectl (``make kubernetes`` builds it): the Python
client belongs to bench/kube.  The lab kubelet (testbed/kubelab/kubelet/, started here once the
Nodes are registered) makes its own few calls, as each node (testbed/kubelab/kubelet/api.py).
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
from talbench.bench.lab import processes
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.addons import Record
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabNode, LabState, Leftovers
from talbench.bench.model import Role
from testbed.checkout import CHECKOUT, python_env
from testbed.image.oci_image import Image
from testbed.image.runner import down_argv
from testbed.kubelab.control import argv as kube_argv
from testbed.kubelab.control import files as kube_files
from testbed.kubelab.control import nodes as kube_nodes
from testbed.kubelab.control.binaries import KUBERNETES_VERSION, KubeBinaries, locate
from testbed.kubelab.control.pki import LabPki, make_pki
from testbed.kubelab.kubelet import config as kubelet_config

FORWARD_MODULE = "testbed.kubelab.control.forward"
KUBELET_MODULE = "testbed.kubelab.kubelet"
DIRECTORY = "kubernetes"
STATE_FILE = "kubernetes.json"
KUBECONFIG = "kubeconfig"  # <lab_dir>/kubeconfig: the admin's
API_PORT = kube_argv.API_PORT
DEFAULT_READY_TIMEOUT = 180.0  # a cold kube-apiserver on a loaded 2-core machine takes tens of seconds
KUBECTL_TIMEOUT = 10.0
COMPONENTS = ("etcd", "kube-apiserver", "forwarder", "kube-controller-manager", "kube-scheduler", "kubelet")
LEADER_LEASES = ("kube-controller-manager", "kube-scheduler")
LEFTOVERS_NAME = "kubernetes"
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


def leftovers(kube: KubeLab) -> Leftovers:
    """What ``lab down`` stops, knowing nothing of Kubernetes: the components in order, clients
    before servers (all at once, kube-apiserver waits out its grace for an etcd that is gone:
    seconds instead of one), then the lab kubelet's pod containers (testbed/image/down.py)."""
    pids = tuple(kube.pids[name] for name in STOP_ORDER if name in kube.pids)
    return Leftovers(LEFTOVERS_NAME, pids=pids, teardown=down_argv(kube.lab_id), cwd=str(CHECKOUT))


def _save(kube: KubeLab, record: Record | None) -> None:
    kube.save()
    if record is not None:
        record(leftovers(kube))


def component_status(kube: KubeLab) -> dict[str, str]:
    return {name: ("running" if processes.alive(pid) else "not running") for name, pid in kube.pids.items()}


@dataclass(frozen=True)
class ExtraArgs:
    """Flags added to a component's command line (the last occurrence of a flag wins)."""

    apiserver: tuple[str, ...] = ()
    controller_manager: tuple[str, ...] = ()
    scheduler: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlPlane:
    kube: KubeLab  # its pids: every component started so far
    pki: LabPki
    binaries: KubeBinaries
    inside: str  # the API server's URL inside the lab
    cluster: str  # the kubeconfigs' cluster name


def start(
    ip: Ip,
    state: LabState,
    *,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    images: Sequence[Image] = (),
    record: Record | None = None,
) -> KubeLab:
    """Start the control plane on ``state``'s first control plane, register the lab's nodes,
    start the lab kubelet (testbed/kubelab/kubelet/main.py; it has ``images``), and wait (bounded) until
    the API server is ready, the controller manager and the scheduler hold their leases and
    every node is Ready."""
    node = next((n for n in state.nodes if n.role is Role.CONTROL_PLANE), None)
    if node is None:
        raise InfrastructureError("the Kubernetes lab needs a control plane node")
    deadline = time.monotonic() + ready_timeout
    plane = start_control_plane(ip, state, node, deadline, record=record)
    kube, pki, binaries = plane.kube, plane.pki, plane.binaries
    _kubectl(binaries, kube, "apply", "-f", "-", stdin=kube_nodes.manifest(state.nodes))
    kubelet = kubelet_config.prepare(
        state.lab_id,
        kube.directory,
        server=plane.inside,
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
    pid = processes.spawn(argv, kube.directory / "kubelet.log", env=python_env())
    kube = _with(kube, pids={**kube.pids, "kubelet": pid})
    _save(kube, record)
    for lease in LEADER_LEASES:
        wait_for(kube, binaries, deadline, f"{lease} to hold its lease", "-n", "kube-system", "get", "lease", lease)
    wait_for(
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
    return kube


def start_control_plane(
    ip: Ip,
    state: LabState,
    node: LabNode,
    deadline: float,
    *,
    extra: ExtraArgs = ExtraArgs(),
    record: Record | None = None,
) -> ControlPlane:
    """etcd, kube-apiserver, the loopback forwarder, kube-controller-manager and kube-scheduler in
    ``node``'s namespace, with their PKI and kubeconfigs and the admin's kubeconfig; returns once
    the API server is ready and the controllers are started (before ``deadline``).  Every pid is
    on record (``kubernetes.json``) as soon as it exists, for ``lab down``.  The lab kubelet is
    the caller's (``start``; the scale benchmark simulates every kubelet instead)."""
    binaries = locate()
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
        _save(kube, record)  # each pid on record as soon as it exists

    launch("etcd", kube_argv.etcd_argv(binaries, directory, pki, node))
    launch("kube-apiserver", [*kube_argv.apiserver_argv(binaries, directory, pki, node), *extra.apiserver])
    port = _start_forwarder(state, node, directory, pids)
    kube = _with(kube, server=f"https://127.0.0.1:{port}")
    _save(kube, record)
    admin = kube_files.kubeconfig(kube.server, pki.ca, pki.admin, cluster=cluster, user="admin")
    kube_files.write_kubeconfig(kube.kubeconfig, admin)
    wait_for(kube, binaries, deadline, "the API server to be ready", "get", "--raw=/readyz")
    cm_argv = kube_argv.controller_manager_argv(binaries, directory, pki, cluster)
    launch("kube-controller-manager", [*cm_argv, *extra.controller_manager])
    launch("kube-scheduler", [*kube_argv.scheduler_argv(binaries, directory), *extra.scheduler])
    return ControlPlane(_with(kube, pids=dict(pids)), pki, binaries, inside, cluster)


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
        pids["forwarder"] = processes.spawn(
            argv, directory / "forwarder.log", env=python_env(), keep_fds=(listener.fileno(),)
        )
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


def wait_for(kube: KubeLab, binaries: KubeBinaries, deadline: float, what: str, *kubectl_args: str) -> None:
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
