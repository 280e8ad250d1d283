"""The Kubernetes lab (``python -m testbed.kubelab up --kubernetes``): its PKI, admission configuration and
Node objects without root; then, as root and with the binaries ``make kubernetes`` builds once
per machine (never built here: the test skips without them), a real control plane on a lab,
checked through the real API and removed without a trace by ``lab down``."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from talbench.bench.errors import MissingDependency
from talbench.bench.lab import lab, processes
from talbench.bench.lab.state import LabNode
from talbench.bench.model import Role
from testbed.kubelab.control import binaries as kube_binaries
from testbed.kubelab.control import files as kube_files
from testbed.kubelab.control import nodes as kube_nodes
from testbed.kubelab.control import pki as kube_pki
from testbed.kubelab.control import plane as kube_control
from tests.bench.lab.helpers import lab_namespaces, lab_root, skip_unless_lab_possible, talbench_cli
from tests.testbed.helpers import kubectl, kubelab_cli

BUILD_HINT = "the Kubernetes binaries are built once per machine by `make kubernetes` (not by the tests)"


def _node(name: str, role: Role, address: str) -> LabNode:
    labels = {"kubernetes.io/hostname": name}
    taints: tuple[str, ...] = ()
    if role is Role.CONTROL_PLANE:
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints = ("node-role.kubernetes.io/control-plane:NoSchedule",)
    return LabNode(name, role, f"tb-x-{name}", address, 8946, labels, taints, Path("/nonexistent"))


def test_pki_certificates_name_what_each_client_is(tmp_path):
    pki = kube_pki.make_pki(tmp_path / "pki", "labtest", ("10.90.0.11",))
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.apiserver.cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.90.0.11", "10.96.0.1"}
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert server.issuer == ca.subject
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    admin = x509.load_pem_x509_certificate(pki.admin.cert.read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert list(admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    cm = x509.load_pem_x509_certificate(pki.controller_manager.cert.read_bytes())
    assert cm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-controller-manager"
    for key in (pki.ca.key, pki.apiserver.key, pki.admin.key, pki.service_account_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_admission_is_talos_pod_security():
    plugin = kube_files.admission_config()["plugins"][0]
    assert plugin["name"] == "PodSecurity"
    config = plugin["configuration"]
    assert config["defaults"]["enforce"] == "baseline"
    assert config["defaults"]["warn"] == config["defaults"]["audit"] == "restricted"
    assert config["exemptions"]["namespaces"] == ["kube-system"]


def test_nodes_carry_talos_labels_and_the_control_plane_taint():
    docs = list(
        yaml.safe_load_all(
            kube_nodes.manifest(
                [_node("cp1", Role.CONTROL_PLANE, "10.90.0.11"), _node("w1", Role.WORKER, "10.90.0.21")]
            )
        )
    )
    cp, worker = docs
    assert cp["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert cp["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert kube_nodes.EXCLUDE_FROM_LB_LABEL in cp["metadata"]["labels"]
    assert worker["spec"] == {} and worker["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert {"type": "InternalIP", "address": "10.90.0.21"} in worker["status"]["addresses"]


def test_missing_binaries_name_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("TALBENCH_KUBERNETES_DIR", str(tmp_path))
    with pytest.raises(MissingDependency) as caught:
        kube_binaries.locate()
    assert "make kubernetes" in (caught.value.hint or "")


# -- the real control plane ----------------------------------------------------------------------


def _get(server: str, ca: Path, path: str, token: str | None = None) -> int:
    """The HTTP status of GET ``path`` with no client certificate (and ``token`` if given)."""
    host, port = server.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=20)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: psa-check}
spec:
  containers:
  - name: c
    image: registry.invalid/none:1
    securityContext: {privileged: true}
"""


@pytest.mark.root("ip", "sysctl")
@pytest.mark.lab
def test_lab_up_kubernetes_is_a_real_control_plane_and_lab_down_leaves_nothing():
    skip_unless_lab_possible(agents=True)
    if not kube_binaries.available():
        pytest.skip(f"no Kubernetes binaries in {kube_binaries.kubernetes_dir()}: {BUILD_HINT}")
    with lab_root() as root:
        up = kubelab_cli(root, "up", "--kubernetes", "--control-planes", "1", "--workers", "1", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        (lab_dir,) = [p for p in root.iterdir() if p.is_dir()]
        kube = kube_control.load(lab_dir)
        assert kube is not None and kube.server.startswith("https://127.0.0.1:")
        assert str(kube.kubeconfig) in up.stdout and stat.S_IMODE(kube.kubeconfig.stat().st_mode) == 0o600
        assert all(processes.alive(pid) for pid in kube.pids.values()), kube.pids

        version = kubectl(kube.kubeconfig, "version", "-o", "json")
        assert version.returncode == 0, version.stderr
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == kube_binaries.KUBERNETES_VERSION
        metrics = kubectl(kube.kubeconfig, "get", "--raw", "/metrics")
        assert metrics.returncode == 0 and "apiserver_request_total" in metrics.stdout

        nodes = json.loads(kubectl(kube.kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
        by_name = {n["metadata"]["name"]: n for n in nodes}
        assert set(by_name) == {"cp1", "w1"}
        cp_taints = {(t["key"], t["effect"]) for t in by_name["cp1"]["spec"].get("taints", [])}
        assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in cp_taints

        # Authentication and RBAC: no credentials, a wrong token, a valid token bound to no role.
        ca = kube.directory / "pki" / "ca.crt"
        nobody = kube.nobody_token_file.read_text().strip()
        assert _get(kube.server, ca, "/api/v1/secrets") == 403  # system:anonymous
        assert _get(kube.server, ca, "/api/v1/secrets", token="not-a-token") == 401
        assert _get(kube.server, ca, "/api/v1/secrets", token=nobody) == 403
        assert _get(kube.server, ca, "/version", token=nobody) == 200  # authenticated, public info

        # Pod Security as Talos configures it: baseline enforced in a namespace without labels.
        assert kubectl(kube.kubeconfig, "create", "namespace", "psa-check").returncode == 0
        # the controller manager's service-account controller gives it its default ServiceAccount
        deadline = time.monotonic() + 60
        while kubectl(kube.kubeconfig, "-n", "psa-check", "get", "serviceaccount", "default").returncode != 0:
            assert time.monotonic() < deadline, "no default ServiceAccount in psa-check within 60 s"
            time.sleep(0.5)
        refused = kubectl(kube.kubeconfig, "apply", "-f", "-", stdin=PRIVILEGED_POD)
        assert refused.returncode != 0
        assert 'violates PodSecurity "baseline:latest": privileged' in refused.stderr, refused.stderr

        status = kubelab_cli(root, "status", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert str(kube.kubeconfig) in status.stdout and kube.server in status.stdout

        lab_id = lab_dir.name
        pids = list(kube.pids.values())
        port = int(kube.server.rsplit(":", 1)[1])
        down = talbench_cli(root, "lab", "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not any(processes.alive(pid) for pid in pids)
        assert lab_namespaces(lab_id) == [] and not lab_dir.exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert lab.status(root) is None
