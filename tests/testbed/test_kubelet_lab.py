"""The lab kubelet on a real control plane (root, the Kubernetes binaries from ``make kubernetes``
and the image from ``make image``; skipped without them): Nodes Ready with Talos' taints and a
Lease, KubePrism on every node, pods that run and get Ready, fail to pull, crash-loop, show their
logs through the API server and go within their grace; the kube dispatcher's DaemonSet run end to
end; and ``lab down`` leaving no process, container, namespace or cgroup."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from talbench.bench.lab import processes
from talbench.bench.lab import state as lab_state
from testbed.image import runner as containers
from testbed.kubelab.control import binaries as kube_binaries
from testbed.kubelab.control import plane as kube_control
from tests.bench.lab.helpers import lab_namespaces, lab_root, talbench_cli, until
from tests.testbed.helpers import archive_or_skip, kubectl, kubelab_cli

# -- root: the lab kubelet on a real control plane ------------------------------------------------

GOOD_IMAGE = "localhost/talbench:{tag}"
PODS = """
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: kl}}
spec:
  terminationGracePeriodSeconds: 4
  automountServiceAccountToken: false
  containers:
  - name: web
    image: {image}
    command: [python, -m, http.server, "18080", --bind, "$(POD_IP)"]
    env:
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    readinessProbe:
      httpGet: {{path: /, port: 18080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: badimage, namespace: kl}}
spec:
  containers:
  - {{name: c, image: "registry.invalid/nothing:1"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash, namespace: kl}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {image}
    command: [sh, -c, "echo dying; exit 3"]
    terminationMessagePolicy: FallbackToLogsOnError
"""


def _pod_json(kube: kube_control.KubeLab, name: str) -> dict[str, Any]:
    done = kubectl(kube.kubeconfig, "-n", "kl", "get", "pod", name, "-o", "json")
    return json.loads(done.stdout) if done.returncode == 0 else {}


def _waiting_reason(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return str(((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", ""))


@pytest.mark.root("ip", "sysctl", "runc")
@pytest.mark.lab
def test_lab_kubelet_runs_pods_and_lab_down_leaves_nothing():
    archive = archive_or_skip()
    if not kube_binaries.available():
        pytest.skip(f"no Kubernetes binaries in {kube_binaries.kubernetes_dir()}: make kubernetes")
    with lab_root() as root:
        started = time.monotonic()
        up = kubelab_cli(
            root,
            "up",
            "--kubernetes",
            "--image",
            str(archive),
            "--control-planes",
            "1",
            "--workers",
            "1",
            timeout=420,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        (lab_dir,) = [p for p in root.iterdir() if p.is_dir()]
        kube = kube_control.load(lab_dir)
        assert kube is not None and "kubelet" in kube.pids
        print(f"lab up --kubernetes --image: {time.monotonic() - started:.1f}s")

        nodes = json.loads(kubectl(kube.kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
        ready = {
            n["metadata"]["name"]: {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] for n in nodes
        }
        assert ready == {"cp1": "True", "w1": "True"}
        cp = next(n for n in nodes if n["metadata"]["name"] == "cp1")
        assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in cp["spec"]["taints"]
        lease = kubectl(
            kube.kubeconfig, "-n", "kube-node-lease", "get", "lease", "w1", "-o", "jsonpath={.spec.holderIdentity}"
        )
        assert lease.stdout == "w1", lease.stderr
        # KubePrism: 127.0.0.1:7445 in a worker's namespace reaches the API server (the agent's own probe)
        worker_ns = lab_state.load_state(lab_dir).node("w1").namespace
        code = "import asyncio; from talbench.agents.probes.kubeprism.probe import attempt; print(asyncio.run(attempt(7445, 5))['http_status'])"
        prism = subprocess.run(
            ["ip", "netns", "exec", worker_ns, sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert prism.stdout.strip() in ("200", "401", "403"), prism.stdout + prism.stderr

        tags = json.loads((kube.directory / "kubelet" / "kubelet.json").read_text())["images"][0]["tags"]
        image = (
            GOOD_IMAGE.format(tag=tags[0])
            if tags
            else "localhost/talbench@"
            + json.loads((kube.directory / "kubelet" / "kubelet.json").read_text())["images"][0]["digest"]
        )
        assert kubectl(kube.kubeconfig, "create", "namespace", "kl").returncode == 0
        until(  # the controller manager's service-account controller gives it its default ServiceAccount
            "a default ServiceAccount in kl",
            lambda: kubectl(kube.kubeconfig, "-n", "kl", "get", "serviceaccount", "default").returncode == 0,
            60,
        )
        created = kubectl(kube.kubeconfig, "apply", "-f", "-", stdin=PODS.format(image=image))
        assert created.returncode == 0, created.stderr

        started = time.monotonic()
        web_pod = until(
            "web Running and Ready",
            lambda: (
                (p := _pod_json(kube, "web"))
                and p["status"].get("phase") == "Running"
                and {c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready") == "True"
                and p
            ),
            90,
        )
        print(f"web Ready after {time.monotonic() - started:.1f}s")
        assert web_pod["status"]["podIP"] == web_pod["status"]["hostIP"]  # the node's network
        assert web_pod["status"]["containerStatuses"][0]["imageID"].startswith("sha256:")
        until(
            "badimage in ErrImagePull/ImagePullBackOff",
            lambda: _waiting_reason(_pod_json(kube, "badimage")) in ("ErrImagePull", "ImagePullBackOff"),
            30,
        )
        assert _pod_json(kube, "badimage")["status"]["phase"] == "Pending"
        crash = until(
            "crash in CrashLoopBackOff after restarts",
            lambda: (
                (p := _pod_json(kube, "crash"))
                and _waiting_reason(p) == "CrashLoopBackOff"
                and p["status"]["containerStatuses"][0]["restartCount"] >= 1
                and p
            ),
            60,
        )
        last = crash["status"]["containerStatuses"][0]["lastState"]["terminated"]
        assert last["exitCode"] == 3 and last["message"] == "dying", last
        logs = kubectl(
            kube.kubeconfig, "-n", "kl", "logs", "crash", "--previous"
        )  # through the kubelet endpoint on w1:10250
        assert logs.returncode == 0 and logs.stdout.strip() == "dying", logs.stdout + logs.stderr
        assert any(cid.startswith(f"talbench-{lab_dir.name}-k") for cid in containers.lab_containers(lab_dir.name))

        started = time.monotonic()
        deleted = kubectl(kube.kubeconfig, "-n", "kl", "delete", "pod", "web", "--timeout=30s")
        took = time.monotonic() - started
        assert deleted.returncode == 0, deleted.stderr
        assert took < 4 + 8, (
            f"web took {took:.1f}s to go (grace 4s)"
        )  # python as PID 1 ignores TERM: the grace, then KILL
        print(f"web deleted in {took:.1f}s (grace 4s)")
        started = time.monotonic()
        gone = kubectl(kube.kubeconfig, "delete", "namespace", "kl", "--timeout=60s")
        assert gone.returncode == 0, gone.stderr
        print(f"namespace kl deleted in {time.monotonic() - started:.1f}s")
        assert not [c for c in containers.lab_containers(lab_dir.name) if "-k" in c.removeprefix("talbench-")]

        # one pod left running for lab down to remove
        again = kubectl(
            kube.kubeconfig,
            "run",
            "left",
            "--image",
            image,
            "--restart=Never",
            "--command",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 600 & wait",
        )
        assert again.returncode == 0, again.stderr
        until(
            "left Running",
            lambda: (
                kubectl(kube.kubeconfig, "get", "pod", "left", "-o", "jsonpath={.status.phase}").stdout == "Running"
            ),
            60,
        )

        lab_id = lab_dir.name
        pids = list(kube.pids.values())
        down = talbench_cli(root, "lab", "down", timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not any(processes.alive(pid) for pid in pids)
        assert containers.lab_containers(lab_id) == ()
        assert lab_namespaces(lab_id) == [] and not lab_dir.exists()
        assert containers.cgroup_parents(lab_id) == ()
        leftover = subprocess.run(["pgrep", "-f", lab_id], capture_output=True, text=True, check=False).stdout.split()
        assert leftover == [], leftover


@pytest.mark.root("ip", "sysctl", "runc")
@pytest.mark.lab
def test_the_kube_dispatcher_runs_its_daemonset_on_the_lab_kubelet(tmp_path):
    """``talbench run --target kube`` against the lab's kubeconfig: the DaemonSet's agents run
    under the lab kubelet, get Ready through their readiness probe, are reached through the
    API server's pod proxy, and the run's namespace is gone afterwards (the kubelet deletes
    the pods once they stopped within their grace)."""
    archive = archive_or_skip()
    if not kube_binaries.available():
        pytest.skip(f"no Kubernetes binaries in {kube_binaries.kubernetes_dir()}: make kubernetes")
    with lab_root() as root:
        up = kubelab_cli(root, "up", "--kubernetes", "--image", str(archive), timeout=420)
        assert up.returncode == 0, up.stdout + up.stderr
        (lab_dir,) = [p for p in root.iterdir() if p.is_dir()]
        kube = kube_control.load(lab_dir)
        assert kube is not None
        config = json.loads((kube.directory / "kubelet" / "kubelet.json").read_text())["images"][0]
        image = f"localhost/talbench@{config['digest']}"
        started = time.monotonic()
        argv = ["run", "--target", "kube", "--kubeconfig", str(kube.kubeconfig), "--image", image]
        argv += ["--scenario", "control-plane", "--only", "rtt", "--quick", "--format", "json", "--out", str(tmp_path)]
        run = talbench_cli(root, *argv, timeout=300)
        print(
            f"talbench run --target kube on the lab kubelet: {time.monotonic() - started:.1f}s, exit {run.returncode}"
        )
        assert run.returncode in (0, 1), run.stdout[-2000:] + run.stderr[-2000:]
        (result,) = tmp_path.glob("*/run.json")
        verdicts = json.loads(result.read_text())["verdicts"]
        assert any(v["check"] == "worker-rtt" for v in verdicts), verdicts
        left = kubectl(
            kube.kubeconfig, "get", "namespaces", "-l", "app.kubernetes.io/managed-by=talbench", "-o", "name"
        )
        assert left.returncode == 0 and left.stdout.strip() == "", left.stdout
