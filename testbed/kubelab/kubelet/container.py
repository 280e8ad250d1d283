"""One container of a lab pod, as the lab kubelet prepares and watches it: its bundle (the OCI
runtime config from the pod spec, testbed/kubelab/kubelet/spec.py), its readiness and liveness
probes, and the words it reports (an image it does not have, the last lines of a failed run)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.image import oci_spec
from testbed.image.oci_image import goarch
from testbed.kubelab.kubelet import probe as kubelet_probe
from testbed.kubelab.kubelet import runc as kubelet_runc
from testbed.kubelab.kubelet import spec as kubelet_spec
from testbed.kubelab.kubelet import volumes as kubelet_volumes
from testbed.kubelab.kubelet.api import Api
from testbed.kubelab.kubelet.config import KubeletConfig, KubeletImage, KubeletNode
from testbed.kubelab.kubelet.spec import ImageConfig, Lookup, Mount

log = logging.getLogger(__name__)

MESSAGE_LINES = 80  # a termination message: the kubelet's FallbackToLogsOnError limits
MESSAGE_BYTES = 2048


@dataclass(frozen=True)
class NodeContext:
    """What every pod of one node works with: the kubelet's config, the node, its API session."""

    config: KubeletConfig
    node: KubeletNode
    api: Api

    @property
    def node_root(self) -> Path:
        """The lab node's own file tree (where its hostPath volumes live)."""
        return self.config.directory / "nodes" / self.node.name / "root"


def pull_message(config: KubeletConfig, reference: str) -> str:
    have = ", ".join(f"talbench:{t} = {i.digest}" for i in config.images for t in i.tags) or "none"
    return (
        f'the lab kubelet has no image "{reference}" (it has only the archives given to '
        f"lab up --kubernetes --image: {have})"
    )


def write_bundle(
    ctx: NodeContext,
    pod: Mapping[str, Any],
    pod_dir: Path,
    container: Mapping[str, Any],
    image: KubeletImage,
    volumes: Mapping[str, Mount],
    lookup: Lookup,
) -> tuple[Path, str]:
    """Write the container's bundle (config.json) into the pod's directory; (bundle, runc id).
    SpecError for what the pod asks and the lab cannot give."""
    name = str(container["name"])
    meta = pod.get("metadata") or {}
    config = ImageConfig(image.entrypoint, image.cmd, image.env, image.cwd, image.user)
    env = kubelet_spec.environment(container, pod, config, ctx.node.address, lookup)
    hostname = ctx.node.name if (pod.get("spec") or {}).get("hostNetwork") else str(meta.get("name", ""))[:63]
    env.setdefault("HOSTNAME", hostname)
    api_host, _, api_port = ctx.config.api_endpoint.rpartition(":")
    env.setdefault("KUBERNETES_SERVICE_HOST", api_host)
    env.setdefault("KUBERNETES_SERVICE_PORT", api_port)
    mounts = kubelet_volumes.container_mounts(container, volumes)
    cid = kubelet_runc.container_id(ctx.config.lab_id, str(meta.get("uid", "")), name)
    sock = pod_dir / "sock"  # oci_spec mounts a socket directory into every container: an empty one
    sock.mkdir(parents=True, exist_ok=True)
    node_container = kubelet_spec.node_container(
        container_id=cid,
        hostname=hostname,
        netns_path=f"/run/netns/{ctx.node.namespace}",
        cgroups_path=kubelet_runc.cgroups_path(ctx.config.lab_id, ctx.node.name, cid),
        image=config,
        rootfs=str(image.rootfs),
        args=kubelet_spec.argv(container, config, env),
        env=env,
        user_ids=kubelet_spec.user(container, pod, config),
        mounts=mounts,
        socket_dir=str(sock),
        arch=goarch(),
        working_dir=container.get("workingDir"),
    )
    bundle = pod_dir / "containers" / name
    runtime = oci_spec.runtime_config(kubelet_spec.pod_context(container, pod, mounts), node_container)
    kubelet_runc.write_bundle(bundle, runtime)
    return bundle, cid


def start_probes(
    container: Mapping[str, Any] | None,
    *,
    node: KubeletNode,
    cid: str,
    grace: Callable[[], float],
    set_ready: Callable[[bool], Awaitable[None]],
) -> list[asyncio.Task[None]]:
    """The container's readiness probe (into ``set_ready``) and liveness probe (a failure: TERM,
    the grace, KILL; the restart policy does the rest), as tasks the caller cancels."""
    if container is None:
        return []
    ports = {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or () if p.get("name")}
    tasks = []
    readiness = container.get("readinessProbe")
    if readiness:
        tasks.append(
            asyncio.create_task(
                kubelet_probe.run(readiness, host=node.address, ports=ports, container_id=cid, report=set_ready)
            )
        )
    liveness = container.get("livenessProbe")
    if liveness:

        async def kill(alive: bool) -> None:
            if not alive:
                log.info("container %s failed its liveness probe: stopping it", cid)
                await kubelet_runc.signal(cid, "TERM")
                await asyncio.sleep(grace())
                await kubelet_runc.signal(cid, "KILL")

        probe = kubelet_probe.run(liveness, host=node.address, ports=ports, container_id=cid, report=kill, initial=True)
        tasks.append(asyncio.create_task(probe))
    return tasks


def tail(path: Path) -> str:
    """The last lines of a container's output (FallbackToLogsOnError's message)."""
    try:
        data = path.read_bytes()[-MESSAGE_BYTES:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-MESSAGE_LINES:])
