"""Where the Kubernetes lab's programs are: kube-apiserver, kube-controller-manager,
kube-scheduler and kubectl from ``make kubernetes`` (agents/build/build-kubernetes.sh, once per
machine into the cache), etcd from ``make etcd`` (the one the agents run).  Nothing here builds:
a missing binary is a MissingDependency naming the make target."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from talbench.bench.errors import MissingDependency

KUBERNETES_VERSION = "v1.36.3"  # agents/build/build-kubernetes.sh KUBERNETES_VERSION
DEFAULT_CACHE = Path("/var/cache/talbench")
KUBERNETES_PROGRAMS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


@dataclass(frozen=True)
class KubeBinaries:
    apiserver: Path
    controller_manager: Path
    scheduler: Path
    kubectl: Path
    etcd: Path


def kubernetes_dir() -> Path:
    """$TALBENCH_KUBERNETES_DIR, else the cache directory ``make kubernetes`` fills."""
    explicit = os.environ.get("TALBENCH_KUBERNETES_DIR")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("TALBENCH_CACHE") or DEFAULT_CACHE)
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return cache / "kubernetes" / KUBERNETES_VERSION / f"linux-{arch}"


def locate() -> KubeBinaries:
    """The lab's Kubernetes programs and etcd; MissingDependency when one is not there."""
    directory = kubernetes_dir()
    found = {name: directory / name for name in KUBERNETES_PROGRAMS}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise MissingDependency(
            f"the Kubernetes lab needs {', '.join(missing)} {KUBERNETES_VERSION} in {directory}",
            hint="build them once per machine with: make kubernetes (or set TALBENCH_KUBERNETES_DIR)",
        )
    etcd = os.environ.get("TALBENCH_ETCD") or shutil.which("etcd")
    if not etcd or not os.access(etcd, os.X_OK):
        raise MissingDependency("the Kubernetes lab needs etcd", hint="build and link it with: make etcd")
    return KubeBinaries(
        apiserver=found["kube-apiserver"],
        controller_manager=found["kube-controller-manager"],
        scheduler=found["kube-scheduler"],
        kubectl=found["kubectl"],
        etcd=Path(etcd),
    )


def available() -> bool:
    """True when ``locate`` would succeed (tests skip without the binaries)."""
    try:
        locate()
    except MissingDependency:
        return False
    return True
