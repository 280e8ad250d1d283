"""Lab agents in runc containers (``python -m testbed.kubelab up --image``): the pod context is the DaemonSet's, the
runtime config grants exactly it, the image is picked and unpacked once, and (root, with runc,
umoci and an image archive) a real lab runs probes in containers whose PID 1 holds only the
declared capabilities on a read-only root, and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from talbench.bench.kube import manifests
from talbench.bench.lab.state import LabState, load_state, save_state
from talbench.bench.lab.topology import LabSpec
from testbed.image import oci_image
from testbed.image import runner as containers
from testbed.image.oci_image import Image
from testbed.image.oci_spec import SOCKET_DIR
from testbed.image.pod import image_launcher, pod_context, quantity
from testbed.image.runner import ImageLauncher
from tests.bench.lab.helpers import lab_namespaces, lab_root
from tests.testbed.helpers import archive_or_skip

CAP_BITS = {"NET_ADMIN": 12, "NET_RAW": 13}

# -- pure: the pod context and the runtime config --------------------------------------------------


def daemonset_pod() -> dict:
    spec = manifests.AgentSpec(run_id="lab", namespace="lab", image="lab", token="lab")
    return manifests.agent_daemonset(spec)["spec"]["template"]["spec"]


def test_the_pod_context_is_read_from_the_daemonset():
    pod, context = daemonset_pod(), pod_context()
    container = pod["containers"][0]
    assert list(context.capabilities) == manifests.agent_capabilities()
    assert context.read_only_root is container["securityContext"]["readOnlyRootFilesystem"]
    assert context.no_new_privileges is (container["securityContext"]["allowPrivilegeEscalation"] is False)
    assert context.memory_limit == quantity(container["resources"]["limits"]["memory"])
    assert context.grace_seconds == pod["terminationGracePeriodSeconds"]
    assert {v.path for v in context.volumes} == {m["mountPath"] for m in container["volumeMounts"]}
    assert context.data_dir == manifests.DATA_DIR and context.token_file.startswith(manifests.TOKEN_DIR)


def test_quantities():
    assert quantity("1Gi") == 2**30 and quantity("250m") == 0.25 and quantity("2") == 2 and quantity(None) is None
    with pytest.raises(ValueError):
        quantity("lots")


def fake_state(tmp_path: Path) -> LabState:
    from talbench.bench.lab.lab import _initial_state
    from talbench.bench.lab.topology import plan_lab

    launcher = ImageLauncher(FAKE_IMAGE, pod_context())
    return _initial_state(plan_lab(LabSpec(1, 0), "lab0a0b0c"), tmp_path, persistent=True, port=7000, launcher=launcher)


FAKE_IMAGE = Image(
    Path("/x.tar"), "sha256:" + "0" * 64, Path("/cache/rootfs"), ("/opt/talbench/bin/talbench",), (), "/"
)


def test_the_runtime_config_grants_exactly_the_pod_context(tmp_path):
    state = fake_state(tmp_path)
    (node,) = state.nodes
    context = pod_context()
    config = containers.node_config(state, node, FAKE_IMAGE, context)
    caps = sorted(f"CAP_{c}" for c in manifests.agent_capabilities())
    process = config["process"]
    assert {k: sorted(v) for k, v in process["capabilities"].items()} == {
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
        "inheritable": [],
        "ambient": [],
    }
    assert process["noNewPrivileges"] is True and process["user"] == {"uid": 0, "gid": 0}
    assert process["args"][:2] == ["/opt/talbench/bin/talbench", "agent"]
    assert process["args"][process["args"].index("--unix") + 1] == f"{SOCKET_DIR}/agent.sock"
    assert config["root"] == {"path": "/cache/rootfs", "readonly": True}
    namespaces = {n["type"]: n.get("path") for n in config["linux"]["namespaces"]}
    assert namespaces == {
        "network": f"/run/netns/{node.namespace}",
        "pid": None,
        "mount": None,
        "ipc": None,
        "uts": None,
    }
    assert config["linux"]["resources"]["memory"]["limit"] == context.memory_limit
    assert config["linux"]["cgroupsPath"] == "/talbench-lab0a0b0c/cp1"
    binds = {m["destination"]: (m["source"], m["options"][-1]) for m in config["mounts"] if m["type"] == "bind"}
    assert binds[context.data_dir] == (str(node.data_dir), "rw")
    assert binds[context.token_file] == (str(state.token_file), "ro")
    assert binds[SOCKET_DIR] == (str(node.socket.parent), "rw")
    assert config["hostname"] == "cp1" and node.socket == node.node_dir / "sock" / "agent.sock"
    assert containers.container_id(state.lab_id, node.name) == "talbench-lab0a0b0c-cp1"


def test_the_lab_state_records_the_image_and_how_to_remove_the_containers(tmp_path):
    state = fake_state(tmp_path)
    (launcher_record,) = (ImageLauncher(FAKE_IMAGE, pod_context()).leftovers(state.lab_id),)
    state = state.with_changes(leftovers=(launcher_record,))
    save_state(state)
    again = load_state(tmp_path)
    assert again.launcher == {
        "archive": "/x.tar",
        "digest": "sha256:" + "0" * 64,
        "rootfs": "/cache/rootfs",
        "grace_seconds": pod_context().grace_seconds,
    }
    assert again.leftovers == state.leftovers and again.nodes[0].socket == state.nodes[0].socket
    (teardown,) = [r.teardown for r in again.leftovers]
    assert teardown[1:] == ("-m", "testbed.image.down", "lab0a0b0c", "--grace", f"{pod_context().grace_seconds:g}")


def test_stop_sends_sigterm_waits_the_grace_period_then_sigkill_and_deletes(monkeypatch):
    calls: list[tuple[str, ...]] = []
    ids = ("talbench-lab0a0b0c-cp1", "talbench-lab0a0b0c-cp2")
    state = dict.fromkeys(ids, "running")

    def fake_runc(argv: list[str], **_: object) -> str:
        calls.append(tuple(argv[1:]))
        if argv[1:3] == ["kill", ids[0]]:
            state[ids[0]] = "stopped"  # cp1 stops on SIGTERM; cp2 ignores it
        if argv[1:4] == ["kill", ids[1], "KILL"]:
            state[ids[1]] = "stopped"
        return json.dumps([{"id": cid, "status": status} for cid, status in state.items()])

    monkeypatch.setattr(containers, "run_tool", fake_runc)
    monkeypatch.setattr(containers.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(containers, "POLL", 0.01)
    assert containers.stop_lab("lab0a0b0c", grace=0.2) == ids
    kills = [c for c in calls if c[0] == "kill"]
    assert kills == [("kill", ids[0], "TERM"), ("kill", ids[1], "TERM"), ("kill", ids[1], "KILL")]
    assert [c for c in calls if c[0] == "delete"] == [("delete", "--force", cid) for cid in ids]


def write_layout(root: Path, arch: str) -> str:
    """A minimal OCI layout: an index of two platforms, each a manifest with a config."""

    def blob(data: dict) -> dict:
        raw = json.dumps(data).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "blobs" / "sha256" / digest).write_bytes(raw)
        return {"digest": f"sha256:{digest}", "size": len(raw)}

    chosen = ""
    entries = []
    for platform in ("arm64", "amd64"):
        config = blob({"architecture": platform, "os": "linux", "config": {"Entrypoint": ["/bin/tb"]}})
        manifest = blob({"schemaVersion": 2, "config": config, "layers": []})
        entries.append({**manifest, "mediaType": "application/vnd.oci.image.manifest.v1+json", "platform": {"architecture": platform, "os": "linux"}})  # fmt: skip
        if platform == arch:
            chosen = manifest["digest"]
    index = blob({"schemaVersion": 2, "manifests": entries})
    nested = {**index, "mediaType": oci_image.INDEX_MEDIA_TYPE}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [nested]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return chosen


def test_this_machines_manifest_is_picked_out_of_a_multi_platform_index(tmp_path):
    expected = write_layout(tmp_path, oci_image.goarch())
    with oci_image._reader(tmp_path) as read:
        digest, config = oci_image._manifest_and_config(read)
    assert digest == expected and config["architecture"] == oci_image.goarch()


# -- root: a real lab in containers ---------------------------------------------------------------


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def cap_eff(pid: int) -> int:
    return int(status_field(pid, "CapEff"), 16)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one inode (a container's /proc/PID/root reads as "/" from outside)."""
    first, second = a.stat(), b.stat()
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def in_container(cid: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "exec", cid, *argv], capture_output=True, text=True, timeout=30, check=False)


def leftovers(lab_id: str) -> dict[str, object]:
    mounts = Path("/proc/self/mountinfo").read_text()
    return {
        "containers": containers.lab_containers(lab_id),
        "cgroups": containers.cgroup_parents(lab_id),
        "namespaces": lab_namespaces(lab_id),
        "mounts": [line for line in mounts.splitlines() if lab_id in line],
    }


@pytest.mark.root("ip", "runc")
@pytest.mark.lab
def test_a_lab_of_containers_runs_probes_with_only_the_declared_capabilities(tmp_path):
    from talbench.bench.lab import lab

    archive = archive_or_skip()
    with lab_root() as root:
        state = lab.up(LabSpec(2, 0), root, launcher=image_launcher(archive), agent_ready_timeout=60)
        lab_id = state.lab_id
        assert state.launcher is not None and Path(state.launcher["archive"]) == archive.resolve()
        declared = sum(1 << CAP_BITS[c] for c in manifests.agent_capabilities())
        for node in state.nodes:
            cid = containers.container_id(lab_id, node.name)
            assert cid in containers.lab_containers(lab_id) and node.pid
            assert cap_eff(node.pid) == declared, node.name
            assert same_file(Path(f"/proc/{node.pid}/root"), Path(state.launcher["rootfs"])), "not the image's root"
            assert status_field(node.pid, "NSpid").split()[-1] == "1", "the agent is not its container's PID 1"
            assert "agent" in in_container(cid, "cat", "/proc/1/cmdline").stdout.split("\0")
            refused = in_container(cid, "touch", "/opt/talbench/written")
            assert refused.returncode != 0 and "Read-only file system" in refused.stderr
            assert in_container(cid, "touch", f"{pod_context().data_dir}/written").returncode == 0
            assert (node.data_dir / "written").exists()
        out = tmp_path / "out"
        environment = {**os.environ, "TALBENCH_LAB_ROOT": str(root)}
        argv = ["run", "--scenario", "control-plane", "--target", "lab", "--image", str(archive)]
        argv += ["--only", "rtt,mtu,fsync", "--quick", "--out", str(out), "--format", "json"]
        done = subprocess.run(
            [sys.executable, "-m", "talbench.bench.cli", *argv],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode in (0, 1), done.stderr
        (run_dir,) = list(out.iterdir())
        doc = json.loads((run_dir / "run.json").read_text())
        statuses = {(v["check"], v["subject"]): v["status"] for v in doc["verdicts"]}
        assert statuses and "no_data" not in statuses.values(), statuses
        lab.down(root, lab_id, term_timeout=5.0)
        assert leftovers(lab_id) == {"containers": (), "cgroups": (), "namespaces": [], "mounts": []}


@pytest.mark.root("ip", "runc")
@pytest.mark.lab
def test_lab_down_removes_the_containers_of_a_lab_whose_directory_is_gone():
    from talbench.bench.lab import lab

    archive = archive_or_skip()
    with lab_root() as root:
        state = lab.up(LabSpec(1, 0), root, launcher=image_launcher(archive), persistent=False)
        shutil.rmtree(state.lab_dir)
        report = lab.remove_leftovers(term_timeout=5.0)
        assert state.lab_id in report.labs and report.removed_of("containers") == (f"talbench-{state.lab_id}-cp1",)
        assert leftovers(state.lab_id) == {"containers": (), "cgroups": (), "namespaces": [], "mounts": []}
