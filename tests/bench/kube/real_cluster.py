"""One real Kubernetes lab for the kube tests: ``python -m testbed.kubelab up --kubernetes --image ARCHIVE``
(kube-apiserver, kube-controller-manager and kube-scheduler from ``make kubernetes``, etcd from
``make etcd``, the lab kubelet running pods from the image under runc), brought up once per test
session and removed by ``talbench lab down`` at its end (the product's down, which knows the
test bed only by what it left on record).

Tests reach it as a user does: the kubeconfig the lab writes (TLS, an admin client certificate)
through the loopback forwarder into the lab, ``kubectl`` and the ``talbench`` CLI.  Every test
works in namespaces and objects named after its own run, so tests share the cluster without
seeing one another's objects.  Needs root, runc, umoci, the binaries and the image archive; the
fixture skips with what is missing otherwise.

While developing, bring a lab up once (``TALBENCH_LAB_ROOT=DIR python -m testbed.kubelab up --kubernetes
--image ARCHIVE``) and set ``TALBENCH_TEST_KUBE_LAB=DIR``: the fixture then uses that lab and
leaves it up.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.kubelab.control import binaries as kube_binaries
from testbed.kubelab.control import plane as kube_control
from tests.bench.lab.helpers import lab_root, talbench_cli
from tests.testbed.helpers import archive_or_skip, kubectl, kubelab_cli

LAB_UP_TIMEOUT = 420.0
MANAGED = "app.kubernetes.io/managed-by=talbench"


@dataclass(frozen=True)
class RealCluster:
    root: Path  # TALBENCH_LAB_ROOT of the lab
    kube: kube_control.KubeLab
    image: str  # localhost/talbench@sha256:...: the image the lab kubelet has

    @property
    def kubeconfig(self) -> Path:
        return self.kube.kubeconfig

    def kubectl(
        self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None, timeout: float = 40.0
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl`` with the lab's admin kubeconfig (or ``kubeconfig``), bounded."""
        return kubectl(kubeconfig or self.kubeconfig, *args, stdin=stdin, timeout=timeout)

    def get_json(self, *args: str) -> dict[str, Any]:
        done = self.kubectl("get", *args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def cli(self, *argv: str, timeout: float, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``talbench ARGV`` as a user runs it (a child process, bounded)."""
        return talbench_cli(self.root, *argv, timeout=timeout, env=env)

    def run_argv(self, out: Path, *extra: str, kubeconfig: Path | None = None) -> list[str]:
        """``talbench run --target kube`` against this cluster with its image, results in ``out``."""
        return [
            "run",
            "--target",
            "kube",
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            "--image",
            self.image,
            "--out",
            str(out),
            *extra,
        ]

    def talbench_namespaces(self) -> list[str]:
        """Namespaces a talbench run created that still exist (terminating ones included)."""
        done = self.kubectl("get", "namespaces", "-l", MANAGED, "-o", "name")
        assert done.returncode == 0, done.stderr
        return sorted(done.stdout.split())


def _existing(root: Path) -> RealCluster:
    (lab_dir,) = [p for p in root.iterdir() if p.is_dir()]
    kube = kube_control.load(lab_dir)
    assert kube is not None, f"TALBENCH_TEST_KUBE_LAB={root}: no Kubernetes lab there"
    return RealCluster(root, kube, _image(kube))


def _image(kube: kube_control.KubeLab) -> str:
    config = json.loads((kube.directory / "kubelet" / "kubelet.json").read_text())["images"][0]
    return f"localhost/talbench@{config['digest']}"


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    """The session's Kubernetes lab (3 control planes, 1 worker), removed at the session's end."""
    archive = archive_or_skip()
    if not kube_binaries.available():
        pytest.skip(f"no Kubernetes binaries in {kube_binaries.kubernetes_dir()}: make kubernetes")
    given = os.environ.get("TALBENCH_TEST_KUBE_LAB")
    if given:
        yield _existing(Path(given))
        return
    with lab_root() as root:
        up = kubelab_cli(root, "up", "--kubernetes", "--image", str(archive), timeout=LAB_UP_TIMEOUT)
        assert up.returncode == 0, up.stdout + up.stderr
        (lab_dir,) = [p for p in root.iterdir() if p.is_dir()]
        kube = kube_control.load(lab_dir)
        assert kube is not None, "lab up --kubernetes recorded no control plane"
        try:
            yield RealCluster(root, kube, _image(kube))
        finally:
            down = talbench_cli(root, "lab", "down", timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
