"""Lab agents in containers: the talbench OCI image (unpacked by testbed/image/oci_image.py) run
on every node by runc with the DaemonSet's pod context (testbed/image/oci_spec.py says how it
maps; testbed/image/pod.py reads it from the DaemonSet).  ``ImageLauncher`` is the process lab's
agent launcher (talbench.bench.lab.addons) that does it.

    start_agent(state, node, image, pod) -> pid   (writes the node's config.json, runc run --detach)
    stop_lab(lab_id, grace)           -> ids      (runc kill TERM, grace, KILL, delete --force)
    remove_cgroups(lab_id)            -> paths    (the lab's cgroup parents, once empty)
    leftover_lab_ids()                -> lab ids  (containers and cgroups, whatever their lab's state)

Every container is ``talbench-<lab id>-<node>``, every cgroup under ``/talbench-<lab id>/``: a
``lab down`` finds them with nothing else to go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.errors import InfrastructureError
from talbench.bench.lab import processes
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabNode, LabState, Leftovers, write_json_atomic
from talbench.bench.lab.topology import LAB_ID_PATTERN
from testbed.checkout import CHECKOUT
from testbed.image import oci_spec
from testbed.image.oci_image import Image, goarch, run_tool
from testbed.image.oci_spec import NodeContainer, PodContext

RUNC_TIMEOUT = 60.0
KILL_WAIT = 5.0
POLL = 0.2
CONTAINER_PREFIX = "talbench-"
_CONTAINER_ID = re.compile(rf"^{CONTAINER_PREFIX}({LAB_ID_PATTERN})-[a-z0-9]+$")
_CGROUP_PARENT = re.compile(rf"^{CONTAINER_PREFIX}({LAB_ID_PATTERN})$")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SOCKET_NAME = "sock/agent.sock"  # a directory of its own: all of the node's directory a container sees
DOWN_MODULE = "testbed.image.down"
# A container's agent starts from the image's own interpreter and files (a cold page cache), and
# the lab's containers share one cgroup parent's CPU weight: on a busy host they take longer.
CONTAINER_AGENT_READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class ImageRequest:
    """``lab up --image``: the archive, and the pod context to run it with (the DaemonSet's)."""

    archive: Path
    pod: PodContext


@dataclass(frozen=True)
class ImageLauncher:
    """The lab's agent launcher for an image (talbench.bench.lab.addons.AgentLauncher): each
    node's agent is the image's, in a runc container with the pod context ``pod``."""

    image: Image
    pod: PodContext
    socket_name: str = SOCKET_NAME
    ready_timeout: float = CONTAINER_AGENT_READY_TIMEOUT

    def description(self) -> dict[str, Any]:
        return {
            "archive": str(self.image.archive),
            "digest": self.image.digest,
            "rootfs": str(self.image.rootfs),
            "grace_seconds": self.pod.grace_seconds,
        }

    def leftovers(self, lab_id: str) -> Leftovers:
        return Leftovers("containers", teardown=down_argv(lab_id, self.pod.grace_seconds), cwd=str(CHECKOUT))

    def start(self, ip: Ip, state: LabState, node: LabNode) -> int:
        return start_agent(state, node, self.image, self.pod)


def down_argv(lab_id: str, grace: float | None = None) -> tuple[str, ...]:
    """The command that stops a lab's containers and removes its cgroups (testbed/image/down.py)."""
    return (sys.executable, "-m", DOWN_MODULE, lab_id, *(("--grace", f"{grace:g}") if grace is not None else ()))


# -- one node's container -----------------------------------------------------------------------


def container_id(lab_id: str, node: str) -> str:
    return f"{CONTAINER_PREFIX}{lab_id}-{node}"


def cgroups_path(lab_id: str, node: str) -> str:
    return f"/{CONTAINER_PREFIX}{lab_id}/{node}"


def agent_args(image: Image, node: LabNode, pod: PodContext) -> tuple[str, ...]:
    """The image's entrypoint running ``agent`` with the lab's options, at the pod's paths."""
    command = image.entrypoint if image.entrypoint[-1] == "agent" else (*image.entrypoint, "agent")
    assert node.socket.name
    return (
        *command,
        "--listen",
        f"{node.address}:{node.port}",
        "--unix",
        f"{oci_spec.SOCKET_DIR}/{node.socket.name}",
        "--token-file",
        pod.token_file,
        "--node",
        node.name,
        "--data-dir",
        pod.data_dir,
    )


def volume_sources(state: LabState, node: LabNode, pod: PodContext) -> dict[str, str]:
    """Where each of the pod's volumes comes from on the host: the token file, the node's data
    directory (the scratch volume), a per-node directory for any other on-disk emptyDir."""
    sources: dict[str, str] = {}
    for volume in pod.volumes:
        if volume.kind == "secret":
            sources[volume.name] = str(state.token_file)
        elif volume.kind == "disk":
            path = node.data_dir if volume.path == pod.data_dir else node.node_dir / "volumes" / volume.name
            path.mkdir(parents=True, exist_ok=True)
            sources[volume.name] = str(path)
    return sources


def node_config(state: LabState, node: LabNode, image: Image, pod: PodContext) -> dict[str, Any]:
    env = dict(item.partition("=")[::2] for item in image.env)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return oci_spec.runtime_config(
        pod,
        NodeContainer(
            container_id=container_id(state.lab_id, node.name),
            hostname=node.name,
            netns_path=f"/run/netns/{node.namespace}",
            cgroups_path=cgroups_path(state.lab_id, node.name),
            rootfs=str(image.rootfs),
            args=agent_args(image, node, pod),
            env=tuple(f"{key}={value}" for key, value in env.items()),
            cwd=image.cwd,
            user=image.user,
            volume_sources=volume_sources(state, node, pod),
            socket_dir=str(node.socket.parent),
            arch=goarch(),
        ),
    )


def start_agent(state: LabState, node: LabNode, image: Image, pod: PodContext) -> int:
    """Write the node's config.json into its directory (the bundle) and start its container;
    the agent's host pid.  The container's output goes to the node's agent.log."""
    cid = container_id(state.lab_id, node.name)
    node.socket.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(node.node_dir / "config.json", node_config(state, node, image, pod), mode=0o600)
    pid_file = node.node_dir / "agent.pid"
    argv = ["runc", "run", "--detach", "--bundle", str(node.node_dir), "--pid-file", str(pid_file), cid]
    with open(os.devnull, "rb") as stdin, node.log.open("ab") as log:
        try:
            done = subprocess.run(argv, stdin=stdin, stdout=log, stderr=log, timeout=RUNC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InfrastructureError(f"runc run {cid} did not return within {RUNC_TIMEOUT:g}s") from exc
    if done.returncode != 0:
        raise InfrastructureError(f"runc run {cid}: {processes.log_tail(node.log, 2) or done.returncode}")
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise InfrastructureError(f"runc run {cid} wrote no pid ({exc})") from exc


# -- stopping and finding -----------------------------------------------------------------------


def list_containers() -> dict[str, Mapping[str, Any]]:
    """runc's containers on this host that are talbench lab's, by id (empty without runc)."""
    if shutil.which("runc") is None:
        return {}
    out = run_tool(["runc", "list", "--format", "json"], check=False).strip()
    try:
        entries = json.loads(out) if out else []
    except ValueError:
        return {}
    return {str(e["id"]): e for e in entries or () if _CONTAINER_ID.match(str(e.get("id", "")))}


def lab_containers(lab_id: str) -> tuple[str, ...]:
    return tuple(sorted(cid for cid in list_containers() if cid.startswith(container_id(lab_id, ""))))


def stop_lab(lab_id: str, grace: float) -> tuple[str, ...]:
    """Every container of the lab: SIGTERM, up to ``grace`` seconds to exit, SIGKILL, then
    ``runc delete --force`` (its cgroup and state go with it).  The ids removed."""
    ids = lab_containers(lab_id)
    if not ids:
        return ()
    _signal(ids, "TERM")
    running = _wait_stopped(ids, grace)
    if running:
        _signal(running, "KILL")
        _wait_stopped(running, KILL_WAIT)
    for cid in ids:
        run_tool(["runc", "delete", "--force", cid], check=False)
    return ids


def _signal(ids: tuple[str, ...], signal_name: str) -> None:
    for cid in ids:
        run_tool(["runc", "kill", cid, signal_name], check=False)  # a stopped one refuses: fine


def _wait_stopped(ids: tuple[str, ...], timeout: float) -> tuple[str, ...]:
    deadline = time.monotonic() + timeout
    while True:
        listed = list_containers()
        running = tuple(cid for cid in ids if cid in listed and listed[cid].get("status") in ("running", "created"))
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(POLL)


def cgroup_parents(lab_id: str) -> tuple[Path, ...]:
    """The lab's cgroup parent in every hierarchy (v1: one per controller; v2: one)."""
    name = f"{CONTAINER_PREFIX}{lab_id}"
    candidates = [CGROUP_ROOT / name, *(h / name for h in _hierarchies())]
    return tuple(path for path in candidates if path.is_dir())


def _hierarchies() -> list[Path]:
    try:
        return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def remove_cgroups(lab_id: str) -> tuple[str, ...]:
    """rmdir the lab's cgroups, deepest first; a cgroup that still holds a process stays."""
    removed: list[str] = []
    for parent in cgroup_parents(lab_id):
        for path in [*sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), parent]:
            with contextlib.suppress(OSError):
                path.rmdir()
                removed.append(str(path))
    return tuple(removed)


def leftover_lab_ids() -> set[str]:
    """Lab ids that still have a container or a cgroup on this host."""
    ids = {m.group(1) for cid in list_containers() if (m := _CONTAINER_ID.match(cid))}
    for hierarchy in [CGROUP_ROOT, *_hierarchies()]:
        with contextlib.suppress(OSError):
            ids |= {m.group(1) for p in hierarchy.iterdir() if (m := _CGROUP_PARENT.match(p.name))}
    return ids
