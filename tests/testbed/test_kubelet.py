"""The lab kubelet (testbed/kubelab/kubelet/) without root: node identities, the pod spec as an OCI
runtime config, pod status, images by reference, volumes and probes.  The real thing, on a
Kubernetes lab: tests/testbed/test_kubelet_lab.py."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from talbench.bench.lab.state import LabNode
from talbench.bench.model import Role
from testbed.kubelab.control import pki as kube_pki
from testbed.kubelab.kubelet import config as kubelet_config
from testbed.kubelab.kubelet import pod as kubelet_pod
from testbed.kubelab.kubelet import probe as kubelet_probe
from testbed.kubelab.kubelet import spec as kubelet_spec
from testbed.kubelab.kubelet.api import ApiError
from testbed.kubelab.kubelet.config import KubeletImage
from testbed.kubelab.kubelet.spec import ImageConfig, SpecError
from testbed.kubelab.kubelet.status import ContainerRecord, phase, pod_status
from testbed.kubelab.kubelet.volumes import container_mounts, materialize

DIGEST = "sha256:" + "ab" * 32
IMAGE = ImageConfig(("/opt/talbench/bin/talbench",), ("--help",), ("PATH=/opt/talbench/bin:/bin",), "/tmp", (0, 0))


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
        "spec": {"nodeName": "w1", "serviceAccountName": "sa", **spec},
    }


def test_images_are_known_by_digest_and_by_the_archive_tags():
    image = KubeletImage(DIGEST, Path("/r"), ("/e",), (), (), "/", (0, 0), ("v0.1.0",))
    assert image.matches(f"registry.example:5000/team/talbench@{DIGEST}")
    assert image.matches("localhost/talbench:v0.1.0") and image.matches("ghcr.io/o/talbench:v0.1.0")
    assert not image.matches("localhost/talbench:v0.2.0")
    assert not image.matches("localhost/other:v0.1.0")
    assert not image.matches(f"localhost/talbench@sha256:{'cd' * 32}")


def test_each_node_gets_its_own_node_identity_from_the_lab_ca(tmp_path):
    pki = kube_pki.make_pki(tmp_path / "pki", "labtest", ("10.9.0.10",))
    nodes = [LabNode("w1", Role.WORKER, "tb-x-w1", "10.9.0.11", 8947, {}, (), tmp_path / "w1")]
    path = kubelet_config.prepare(
        "labtest", tmp_path, server="https://127.0.0.1:6443", api_endpoint="10.9.0.10:6443",
        ca=(pki.ca.cert, pki.ca.key), version="v1.36.3", nodes=nodes, images=(),
    )  # fmt: skip
    config = kubelet_config.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and config.images == () and config.image("x/talbench:v1") is None
    (node,) = config.nodes
    cert = x509.load_pem_x509_certificate(node.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:w1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert cert.issuer == x509.load_pem_x509_certificate(pki.ca.cert.read_bytes()).subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.9.0.11"]  # its :10250 endpoint
    assert stat.S_IMODE(node.key.stat().st_mode) == 0o600


def test_environment_command_and_downward_api():
    container = {
        "command": ["python", "-m", "talbench.agents"],
        "args": ["--listen-address", "$(NODE_IP)", "--node", "$(NODE_NAME)", "$$(NOT)"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "BOTH", "value": "$(NODE_NAME)-$(POD_NS)"},
        ],
    }

    def lookup(kind: str, name: str) -> dict[str, str] | None:
        return {"token": base64.b64encode(b"t0k").decode()} if (kind, name) == ("secret", "s") else None

    env = kubelet_spec.environment(container, _pod(), IMAGE, "10.9.0.11", lookup)
    assert env["NODE_NAME"] == "w1" and env["NODE_IP"] == "10.9.0.11" and env["POD_NS"] == "ns"
    assert env["APP"] == "x" and env["TOKEN"] == "t0k" and env["BOTH"] == "w1-ns"
    assert env["PATH"] == "/opt/talbench/bin:/bin"
    assert kubelet_spec.argv(container, IMAGE, env) == (
        "python", "-m", "talbench.agents", "--listen-address", "10.9.0.11", "--node", "w1", "$(NOT)",
    )  # fmt: skip
    assert kubelet_spec.argv({"args": ["agent"]}, IMAGE, env) == ("/opt/talbench/bin/talbench", "agent")
    assert kubelet_spec.argv({}, IMAGE, env) == ("/opt/talbench/bin/talbench", "--help")
    with pytest.raises(SpecError):
        kubelet_spec.environment(
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]},
            _pod(),
            IMAGE,
            "",
            lookup,
        )


def test_security_context_and_resources_map_onto_the_pod_context():
    container = {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
            "runAsUser": 1000,
        },
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "3Gi"}},
    }
    pod = _pod(securityContext={"seccompProfile": {"type": "RuntimeDefault"}}, terminationGracePeriodSeconds=25)
    context = kubelet_spec.pod_context(container, pod, [])
    assert context.capabilities == ("NET_ADMIN",)
    assert context.no_new_privileges and context.seccomp_runtime_default and context.read_only_root
    assert context.memory_limit == 3 * 2**30 and context.cpu_request_millis == 250 and context.cpu_limit_millis is None
    assert context.grace_seconds == 25
    assert kubelet_spec.user(container, pod, IMAGE) == (1000, 0)
    assert "NET_RAW" in kubelet_spec.capabilities({}) and "NET_ADMIN" not in kubelet_spec.capabilities({})
    assert kubelet_spec.quantity("1.5") == 1.5 and kubelet_spec.quantity("2k") == 2000


def test_volumes_are_written_under_the_pod_and_mounted_as_asked(tmp_path):
    pod = _pod(
        volumes=[
            {
                "name": "token",
                "secret": {"secretName": "s", "defaultMode": 0o400, "items": [{"key": "token", "path": "token"}]},
            },
            {"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}},
            {"name": "wg", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "host", "hostPath": {"path": "/var/lib/thing", "type": "DirectoryOrCreate"}},
            {"name": "cfg", "configMap": {"name": "c"}},
        ]
    )
    data = {("secret", "s"): {"token": base64.b64encode(b"secret!").decode()}, ("configmap", "c"): {"a.conf": "x=1"}}
    volumes = materialize(pod, tmp_path / "pod", tmp_path / "node", lambda k, n: data.get((k, n)), {}, "10.9.0.11")
    token = Path(volumes["token"].source) / "token"
    assert token.read_bytes() == b"secret!" and stat.S_IMODE(token.stat().st_mode) == 0o400
    assert volumes["token"].read_only and volumes["wg"].kind == "memory" and volumes["wg"].size_limit == 2**20
    assert Path(volumes["host"].source) == tmp_path / "node" / "var/lib/thing"  # the lab node's tree, not the host's
    assert (Path(volumes["cfg"].source) / "a.conf").read_text() == "x=1"
    mounts = container_mounts(
        {
            "volumeMounts": [
                {"name": "token", "mountPath": "/run/talbench", "readOnly": True},
                {"name": "scratch", "mountPath": "/d", "subPath": "sub"},
            ]
        },
        volumes,
    )
    assert [(m.path, m.kind) for m in mounts] == [("/run/talbench", "secret"), ("/d", "disk")]
    assert mounts[1].source.endswith("volumes/scratch/sub") and Path(mounts[1].source).is_dir()
    with pytest.raises(SpecError):
        materialize(
            _pod(volumes=[{"name": "x", "secret": {"secretName": "missing"}}]),
            tmp_path / "p2",
            tmp_path,
            lambda k, n: None,
            {},
            "",
        )


def test_phase_and_conditions_follow_the_containers():
    waiting = ContainerRecord("c", "img", reason="ErrImagePull")
    running = ContainerRecord("c", "img", state="running", started_at="t", ready=True)
    crashed = ContainerRecord("c", "img", state="waiting", reason="CrashLoopBackOff", restart_count=2, started_at="t")
    done = ContainerRecord("c", "img", state="terminated", exit_code=0, reason="Completed", started_at="t")
    failed = ContainerRecord("c", "img", state="terminated", exit_code=1, reason="Error", started_at="t")
    assert phase([], [waiting], "Always", True) == "Pending"
    assert phase([], [running], "Always", True) == "Running"
    assert phase([], [crashed], "Always", True) == "Running"
    assert phase([], [done], "Never", True) == "Succeeded" and phase([], [failed], "Never", True) == "Failed"
    assert phase([failed], [waiting], "Never", False) == "Failed"
    status = pod_status(
        init=[], main=[running], policy="Always", init_done=True, host_ip="10.9.0.11", start_time="t", previous={}
    )
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True" and status["podIP"] == status["hostIP"] == "10.9.0.11"
    unready = pod_status(
        init=[], main=[crashed], policy="Always", init_done=True, host_ip="h", start_time="t", previous=status
    )
    assert {c["type"]: c["status"] for c in unready["conditions"]}["Ready"] == "False"
    assert unready["containerStatuses"][0]["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}


async def test_probes_http_tcp_and_their_thresholds():
    app = web.Application()
    healthy = {"ok": True}

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200 if healthy["ok"] else 503)

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        http = {"httpGet": {"path": "/health", "port": "api"}, "timeoutSeconds": 1}
        assert await kubelet_probe.attempt(http, host="127.0.0.1", ports={"api": port}, container_id="x")
        assert await kubelet_probe.attempt({"tcpSocket": {"port": port}}, host="127.0.0.1", ports={}, container_id="x")
        healthy["ok"] = False
        assert not await kubelet_probe.attempt(http, host="127.0.0.1", ports={"api": port}, container_id="x")
        healthy["ok"] = True
        reports: list[bool] = []
        flipped_twice = asyncio.Event()

        async def report(ready: bool) -> None:
            reports.append(ready)
            healthy["ok"] = False  # once ready, fail: the failureThreshold (2) decides when it flips
            if len(reports) == 2:
                flipped_twice.set()

        probe = {**http, "periodSeconds": 1, "failureThreshold": 2}
        task = asyncio.create_task(
            kubelet_probe.run(probe, host="127.0.0.1", ports={"api": port}, container_id="x", report=report)
        )
        try:
            await asyncio.wait_for(flipped_twice.wait(), 10)
        finally:
            task.cancel()
        assert reports == [True, False]
    finally:
        await runner.cleanup()


class _SecretApi:
    """The API as a kubelet sees it right after a pod is bound: the node authorizer refuses the
    pod's secret ``refusals`` times ("no relationship found"), then hands it out."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.asked = 0

    async def get(self, path: str) -> dict:
        self.asked += 1
        if self.asked <= self.refusals:
            raise ApiError(403, "no relationship found between node 'cp3' and this object")
        return {"data": {"token": base64.b64encode(b"s3cret").decode()}}


async def test_a_secret_the_node_authorizer_refuses_at_first_is_asked_for_again(tmp_path, monkeypatch):
    """As the kubelet retries a mount while the pod stays ContainerCreating: a refusal right after
    the binding is not the pod's fault (it is not CreateContainerConfigError, which the run reads
    as an agent that will never come)."""
    monkeypatch.setattr(kubelet_pod, "VOLUME_RETRY", 0.01)
    api = _SecretApi(refusals=2)
    ctx = SimpleNamespace(
        api=api,
        config=SimpleNamespace(pods_dir=tmp_path / "pods"),
        node=SimpleNamespace(address="10.213.0.12"),
        node_root=tmp_path / "root",
    )
    pod = {
        "metadata": {"uid": "u1", "name": "agent", "namespace": "ns"},
        "spec": {
            "containers": [{"name": "agent", "image": "i", "volumeMounts": [{"name": "t", "mountPath": "/t"}]}],
            "volumes": [{"name": "t", "secret": {"secretName": "tok"}}],
        },
    }
    worker = kubelet_pod.PodWorker(ctx, pod)  # type: ignore[arg-type]
    published: list[str] = []

    async def publish() -> None:
        published.append(worker.main["agent"].reason or "")

    worker.publish = publish  # type: ignore[method-assign]
    volumes = await worker._prepared_volumes()
    assert volumes is not None and api.asked == 3
    assert "CreateContainerConfigError" not in published


async def test_the_kubelet_calls_the_api_through_talbenchs_client_and_reads_statuses():
    """The lab kubelet's API (testbed/kubelab/kubelet/api.py) on talbench's client: statuses it
    decides by (404, 403: talbench's NoPermission underneath) come back as ApiError's status,
    merge patches and watches go through, an unreachable server is status 0."""
    from aiohttp.test_utils import TestServer

    from talbench.bench.kube import client as kube_client
    from talbench.bench.kube.config import ApiTarget
    from testbed.kubelab.kubelet.api import Api

    seen: list[tuple[str, str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path, request.headers.get("Content-Type", "")))
        if request.path == "/version":
            return web.json_response({"gitVersion": "v1.36.3"})
        if request.path.endswith("/gone"):
            return web.json_response({"message": "not found"}, status=404)
        if request.path.endswith("/refused"):
            return web.json_response({"message": "no relationship found"}, status=403)
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            for kind in ("ADDED", "DELETED"):
                await response.write((json.dumps({"type": kind, "object": {"metadata": {"uid": "u"}}}) + "\n").encode())
            return response
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    target = ApiTarget(server=str(server.make_url("")).rstrip("/"), context="t", in_cluster=False)
    async with kube_client.connect(target) as client:
        api = Api(client)
        assert await api.patch("/api/v1/nodes/n/status", {"status": {}}) == {"ok": True}
        assert seen[-1] == ("PATCH", "/api/v1/nodes/n/status", "application/merge-patch+json")
        for name, status in (("gone", 404), ("refused", 403)):
            with pytest.raises(ApiError) as caught:
                await api.get(f"/api/v1/secrets/{name}")
            assert caught.value.status == status
        events = [event["type"] async for event in api.watch("/api/v1/pods", fieldSelector="spec.nodeName=n")]
        assert events == ["ADDED", "DELETED"]
        await server.close()
        with pytest.raises(ApiError) as caught:
            await api.get("/api/v1/pods")
        assert caught.value.status == 0
