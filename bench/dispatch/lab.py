"""The lab dispatcher: agents in the local lab of network namespaces, reached over unix sockets.

If a lab brought up by ``talbench lab up`` is up under the root, the run uses it and leaves it
up; otherwise it brings its own lab up from the spec and removes it in ``finally`` (also on
cancellation and Ctrl-C).  Blocking lab work runs in a thread so the event loop keeps going.

With an image (``--image ARCHIVE``) the agents run from it in runc containers with the pod
context of the DaemonSet that ``--target kube`` deploys: ``pod_context`` reads it from
bench/kube/manifests.py (the lab never copies a value of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from talbench.bench.agent_client import AgentClient, AgentError, RequestGate
from talbench.bench.dispatch.base import Fleet
from talbench.bench.kube import manifests
from talbench.bench.lab import lab, processes
from talbench.bench.lab.containers import ImageRequest
from talbench.bench.lab.netns import require_root
from talbench.bench.lab.oci_spec import PodContext, Volume, VolumeKind
from talbench.bench.lab.state import LabNode, LabState
from talbench.bench.lab.topology import LabSpec, new_lab_id, plan_lab
from talbench.bench.model import Node

AGENT_BASE_URL = "http://agent"
DRY_RUN_LAB_ID = "lab000000"  # names the addresses of a lab that is only planned
HEALTH_POLL_INTERVAL = 0.2


class LabDispatcher:
    name = "lab"

    def __init__(
        self,
        root: Path,
        spec: LabSpec,
        *,
        agent_ready_timeout: float | None = None,  # default: lab.ready_timeout(with an image)
        release_timeout: float = 10.0,
        image: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.spec = spec
        self.image = image_request(image) if image is not None else None
        self.agent_ready_timeout = agent_ready_timeout  # None: lab.ready_timeout for the lab's size
        self.release_timeout = release_timeout

    async def discover(self) -> tuple[Node, ...]:
        """The lab that is up, else the nodes ``deploy`` would build (nothing is built)."""
        state = await asyncio.to_thread(lab.find_usable, self.root) if self.root.exists() else None
        if state is not None:
            return state.cluster_nodes()
        return tuple(node.to_node() for node in plan_lab(self.spec, DRY_RUN_LAB_ID).nodes)

    @contextlib.asynccontextmanager
    async def deploy(
        self, run_id: str, *, agents_for: Callable[[Sequence[Node]], frozenset[str]] | None = None
    ) -> AsyncIterator[Fleet]:
        # agents_for is not needed: every lab node's agent runs from lab up to lab down
        owned: str | None = None
        up_task: asyncio.Future[LabState] | None = None
        require_root("run --target lab")
        try:
            state = await asyncio.to_thread(lab.find_usable, self.root)
            if state is None:
                await asyncio.to_thread(lab.remove_leftovers)
                owned = new_lab_id()
                up_task = asyncio.ensure_future(
                    asyncio.to_thread(
                        lab.up,
                        self.spec,
                        self.root,
                        lab_id=owned,
                        persistent=False,
                        wait_ready=False,
                        image=self.image,
                    )
                )
                state = await asyncio.shield(up_task)
            async with lab_fleet(
                state,
                run_id,
                ready_timeout=self.agent_ready_timeout or lab.ready_timeout(self.image is not None, len(state.nodes)),
                release_timeout=self.release_timeout,
                owned=owned is not None,
            ) as fleet:
                yield fleet
        finally:
            if owned is not None:
                await asyncio.shield(self._remove_owned(owned, up_task))

    async def _remove_owned(self, owned: str, up_task: asyncio.Future[LabState] | None) -> None:
        if up_task is not None:
            await asyncio.wait({up_task})  # the thread runs on even when we were cancelled
            if not up_task.cancelled():
                up_task.exception()  # retrieved: up() already removed what it built
        await asyncio.to_thread(lab.down, self.root, owned)


@contextlib.asynccontextmanager
async def lab_fleet(
    state: LabState,
    run_id: str,
    *,
    ready_timeout: float = 20.0,
    release_timeout: float = 10.0,
    owned: bool = False,
) -> AsyncIterator[Fleet]:
    """The agents of a lab that is up, as a Fleet: one unix-socket session per node, health
    waited for (bounded), and in ``finally`` the run released on every agent and the sessions
    closed.  What the lab dispatcher yields; tests use it on a lab they built."""
    sessions: list[aiohttp.ClientSession] = []
    clients: dict[str, AgentClient] = {}
    gate = RequestGate()  # every agent request of the run: at most GATE_LIMIT at once
    try:
        token = await asyncio.to_thread(state.token)
        for node in state.nodes:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(node.socket)))
            sessions.append(session)
            clients[node.name] = AgentClient(node.name, session, AGENT_BASE_URL, token, gate=gate)
        reasons = await asyncio.gather(
            *(_wait_healthy(node, clients[node.name], ready_timeout) for node in state.nodes)
        )
        unready = {node.name: reason for node, reason in zip(state.nodes, reasons, strict=True) if reason is not None}
        yield Fleet(
            run_id=run_id,
            nodes=state.cluster_nodes(),
            agents={name: client for name, client in clients.items() if name not in unready},
            unready=unready,
            target="lab",
            agent_port=state.nodes[0].port,
            teardown="releasing the run on every agent"
            + (", then removing the lab the run brought up" if owned else ""),
            metadata={
                "lab_id": state.lab_id,
                "lab_dir": str(state.lab_dir),
                "lab_owned_by_run": owned,
                "delays": {d.node: {"delay_ms": d.delay_ms, "jitter_ms": d.jitter_ms} for d in state.delays},
                "image": state.image.to_json() if state.image else None,
            },
        )
    finally:
        await asyncio.shield(_close(run_id, clients, sessions, release_timeout))


async def _close(
    run_id: str, clients: dict[str, AgentClient], sessions: list[aiohttp.ClientSession], release_timeout: float
) -> None:
    try:
        if clients:
            await asyncio.gather(*(_release(client, run_id, release_timeout) for client in clients.values()))
    finally:
        for session in sessions:
            await session.close()


async def _release(client: AgentClient, run_id: str, release_timeout: float) -> None:
    try:
        await asyncio.wait_for(client.release_run(run_id), release_timeout)
    except (TimeoutError, AgentError, OSError):
        pass


async def _wait_healthy(node: LabNode, client: AgentClient, ready_timeout: float) -> str | None:
    """None once the agent answers health; else (at the deadline) why it did not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    reason = "no answer"
    while True:
        if node.pid is not None and not processes.alive(node.pid):
            tail = processes.log_tail(node.log, 3)
            return "agent exited" + (f": {tail}" if tail else "")
        remaining = deadline - loop.time()
        if remaining <= 0:
            return f"agent not healthy within {ready_timeout:g}s ({reason})"
        try:
            answer = await asyncio.wait_for(client.health(), min(remaining, 5.0))
            if answer.get("status") == "ok":
                return None
            reason = f"health status {answer.get('status')!r}"
        except (TimeoutError, AgentError) as exc:
            reason = str(exc) or type(exc).__name__
        await asyncio.sleep(min(HEALTH_POLL_INTERVAL, max(0.0, deadline - loop.time())))


# -- the DaemonSet's pod, as the lab's containers reproduce it ------------------------------------

_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str | int | None) -> float | None:
    """A Kubernetes quantity (``1Gi``, ``250m``, ``2``) as a number; None when absent."""
    if text is None:
        return None
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match.group(1)) * _FACTORS.get(match.group(2) or "", 1.0)


def image_request(archive: Path) -> ImageRequest:
    return ImageRequest(Path(archive), pod_context())


def pod_context() -> PodContext:
    """The agent DaemonSet's pod (bench/kube/manifests.py), read back from the manifest itself:
    its security context, limits, grace period, volumes and the agent's paths.

    Capabilities: the lab grants ``capabilities.add`` and nothing else.  A pod keeps its runtime's
    default set besides (containerd's: CHOWN, DAC_OVERRIDE, SETUID, NET_RAW, ...) unless its
    container also says ``drop: [ALL]``, which is what makes the two the same."""
    spec = manifests.AgentSpec(run_id="lab", namespace="lab", image="lab", token="lab")
    pod = manifests.agent_daemonset(spec)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container.get("securityContext") or {}
    resources = container.get("resources") or {}
    args = list(container.get("args") or ())
    volumes = {v["name"]: v for v in pod.get("volumes") or ()}
    cpu_limit = quantity((resources.get("limits") or {}).get("cpu"))
    cpu_request = quantity((resources.get("requests") or {}).get("cpu"))
    memory_limit = quantity((resources.get("limits") or {}).get("memory"))
    return PodContext(
        capabilities=tuple((security.get("capabilities") or {}).get("add") or ()),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        memory_limit=int(memory_limit) if memory_limit else None,
        cpu_limit_millis=round(cpu_limit * 1000) if cpu_limit else None,
        cpu_request_millis=round(cpu_request * 1000) if cpu_request else None,
        grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)),
        volumes=tuple(_volume(mount, volumes[mount["name"]]) for mount in container.get("volumeMounts") or ()),
        data_dir=args[args.index("--data-dir") + 1],
        token_file=args[args.index("--token-file") + 1],
        seccomp_runtime_default=(
            ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "RuntimeDefault"
        ),
    )


def _volume(mount: Mapping[str, Any], volume: Mapping[str, Any]) -> Volume:
    kind: VolumeKind
    item = None
    size = None
    if "secret" in volume:
        kind = "secret"
        items: list[Mapping[str, Any]] = list(volume["secret"].get("items") or ())
        item = str(items[0]["path"]) if len(items) == 1 else None
    elif "emptyDir" in volume:
        empty = volume["emptyDir"] or {}
        kind = "memory" if empty.get("medium") == "Memory" else "disk"
        limit = quantity(empty.get("sizeLimit"))
        size = int(limit) if limit else None
    else:
        raise ValueError(f"the agent pod's volume {volume.get('name')!r} is of a kind the lab does not reproduce")
    return Volume(str(mount["name"]), str(mount["mountPath"]), kind, bool(mount.get("readOnly")), size, item)
