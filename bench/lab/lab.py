"""Bring a lab up, take it down, say how it is.  Synchronous (the CLI calls these directly; the
lab dispatcher runs them in a thread).

    up(spec, root)              -> LabState     (raises NoPermission, MissingDependency,
                                                 UsageError, InfrastructureError)
    down(root, lab_id=None)     -> DownReport   (idempotent; also removes crashed labs' leftovers)
    status(root)                -> LabStatus | None
    find_usable(root)           -> LabState | None   (the persistent lab a run uses)

``up`` lives here: it claims the lab's directory, then builds its network (bench/lab/network.py)
and starts its programs (bench/lab/launch.py), removing everything again when any step fails.
``down`` and ``remove_leftovers`` are bench/lab/teardown.py's, ``status`` and ``find_usable``
bench/lab/status.py's.

Nothing of a lab exists in the root network namespace: veths are created inside the lab's own
namespaces, no lab namespace has a default route, and the coordinator reaches agents through
unix sockets in the nodes' directories.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import time
from pathlib import Path

from talbench.agents import wire
from talbench.bench.errors import InfrastructureError, MissingDependency, UsageError
from talbench.bench.lab import containers, kube_binaries, kube_control, oci_image
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.containers import ContainerAgents, ImageRequest
from talbench.bench.lab.launch import AGENT_MODULE, launch_agents, launch_delayline, wait_agents_ready
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.network import build_network
from talbench.bench.lab.state import LabImage, LabNode, LabState, Owner
from talbench.bench.lab.status import LabStatus, NodeStatus, find_usable, status
from talbench.bench.lab.teardown import DownReport, down, remove_lab, remove_leftovers
from talbench.bench.lab.topology import LabPlan, LabSpec, lab_id_of_namespace, new_lab_id, plan_lab

__all__ = ["DownReport", "LabStatus", "NodeStatus", "down", "find_usable", "remove_leftovers", "status", "up"]

DEFAULT_AGENT_READY_TIMEOUT = 20.0
SMALL_LAB = 4  # nodes the base ready timeouts were set for
AGENT_START_PER_NODE = 1.5  # seconds more per agent beyond SMALL_LAB
# A container's agent starts from the image's own interpreter and files (a cold page cache), and
# the lab's containers share one cgroup parent's CPU weight: on a busy host they take longer.
CONTAINER_AGENT_READY_TIMEOUT = 60.0
KUBERNETES_LAB_AGENT_PORT = wire.DEFAULT_PORT + 1
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def up(
    spec: LabSpec,
    root: Path,
    *,
    lab_id: str | None = None,
    persistent: bool = True,
    start_agents: bool = True,
    wait_ready: bool = True,
    agent_ready_timeout: float | None = None,  # default: (CONTAINER_)AGENT_READY_TIMEOUT
    agent_port: int = wire.DEFAULT_PORT,
    image: ImageRequest | None = None,
    kubernetes: bool = False,
) -> LabState:
    """Build the lab ``spec`` under ``root`` and start its agents; on any failure (or Ctrl-C)
    remove what was built and re-raise.  ``persistent`` labs outlive this process (``talbench lab
    up``); others are the caller's to remove and count as leftovers once the caller is gone.
    With ``image`` the agents are the image's, each in a runc container with the pod context
    ``image.pod`` (bench/lab/containers.py); the image is unpacked (once per digest) first.
    With ``kubernetes`` a real control plane runs on the first control plane and the lab's nodes
    are registered with it (bench/lab/kube_control.py)."""
    require_root("lab up")
    ip = Ip.locate()
    if kubernetes:
        kube_binaries.locate()  # a missing binary stops here, before anything is built
    if spec.delays and not Path("/dev/net/tun").exists():
        raise MissingDependency("--delay needs /dev/net/tun (the TUN driver)", hint="load it with: modprobe tun")
    if start_agents and image is None and importlib.util.find_spec(f"{AGENT_MODULE}.__main__") is None:
        raise MissingDependency(
            f"the talbench agent ({AGENT_MODULE}) is not installed", hint="pip install -e . in the venv"
        )
    root = Path(root).resolve()
    if persistent:
        existing = find_usable(root)
        if existing is not None:
            raise UsageError(f"a lab is already up under {root}: {existing.lab_id} (talbench lab down removes it)")
    if kubernetes and agent_port == wire.DEFAULT_PORT:
        # the DaemonSet's agents (run by the lab kubelet in the nodes' namespaces) listen on the
        # default port: the lab's own agents move aside
        agent_port = KUBERNETES_LAB_AGENT_PORT
    lab_id = lab_id or new_lab_id()
    plan = plan_lab(spec, lab_id)
    lab_dir = root / lab_id
    socket_name = "sock/agent.sock" if image else "agent.sock"
    longest = max(len(str(lab_dir / "nodes" / n.name / socket_name)) for n in plan.nodes)
    if longest > MAX_SOCKET_PATH:
        raise UsageError(
            f"lab root {root} is too long for the agents' unix sockets (max {MAX_SOCKET_PATH} characters in all)"
        )
    agents = ContainerAgents(oci_image.prepare_image(image.archive), image.pod) if image else None
    lab_image = None
    if agents is not None:  # unpacked (or found in the cache) before anything is built
        unpacked = agents.image
        lab_image = LabImage(str(unpacked.archive), unpacked.digest, str(unpacked.rootfs), agents.pod.grace_seconds)

    state = _claim(ip, plan, lab_dir, persistent=persistent, port=agent_port, image=lab_image)
    try:
        build_network(ip, plan)
        if plan.router_namespace:
            state = state.with_changes(delayline_pid=launch_delayline(ip, plan, lab_dir))
            lab_state.save_state(state)
        if start_agents:
            state = launch_agents(ip, state, agents)
            lab_state.save_state(state)
            if wait_ready:
                agent_ready_timeout = agent_ready_timeout or ready_timeout(image is not None, len(state.nodes))
                problems = wait_agents_ready(state, agent_ready_timeout)
                if problems:
                    detail = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
                    raise InfrastructureError(f"lab agents not ready within {agent_ready_timeout:g}s: {detail}")
        if kubernetes:
            kube_control.start(ip, state, images=(agents.image,) if agents else ())
        state = state.with_changes(status=lab_state.STATUS_UP)
        lab_state.save_state(state)
        return state
    except BaseException:
        with contextlib.suppress(Exception):  # the original error says more than a teardown one
            remove_lab(ip, lab_id, lab_dir, term_timeout=2.0)
        raise


def ready_timeout(containers: bool, nodes: int = SMALL_LAB) -> float:
    """How long agents get to answer health by default (as processes, or in containers): the
    base, and AGENT_START_PER_NODE more for each agent beyond a small lab's (they all start at
    once, each a second or two of CPU: 40 agents on 2 cores took over 20 s)."""
    base = CONTAINER_AGENT_READY_TIMEOUT if containers else DEFAULT_AGENT_READY_TIMEOUT
    return base + AGENT_START_PER_NODE * max(0, nodes - SMALL_LAB)


def _claim(ip: Ip, plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int, image: LabImage | None) -> LabState:
    """Create the lab's directory, token and state, and register it in the index, before any
    namespace exists; a lab id already in use (here or in another root) is refused untouched."""
    taken = InfrastructureError(f"lab id {plan.lab_id} is already in use (try again)")
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        lab_dir.mkdir(mode=0o700)
    except FileExistsError as exc:
        raise taken from exc
    try:
        state = _initial_state(plan, lab_dir, persistent=persistent, port=port, image=image)
        lab_state.write_token(lab_dir)
        for node in state.nodes:
            node.data_dir.mkdir(parents=True)
        lab_state.save_state(state)
        if any(lab_id_of_namespace(ns) == plan.lab_id for ns in ip.netns_list()):
            raise taken
        try:
            lab_state.register(plan.lab_id, lab_dir)
        except FileExistsError as exc:
            raise taken from exc
    except BaseException:
        shutil.rmtree(lab_dir, ignore_errors=True)
        raise
    return state


def _initial_state(plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int, image: LabImage | None) -> LabState:
    nodes = tuple(
        LabNode(
            name=n.name,
            role=n.role,
            namespace=n.namespace,
            address=n.address,
            port=port,
            labels=n.labels(),
            taints=n.taints(),
            node_dir=lab_dir / "nodes" / n.name,
            container=containers.container_id(plan.lab_id, n.name) if image else None,
        )
        for n in plan.nodes
    )
    return LabState(
        lab_id=plan.lab_id,
        lab_dir=lab_dir,
        created=time.time(),
        status=lab_state.STATUS_CREATING,
        persistent=persistent,
        owner=Owner.current(),
        control_planes=plan.spec.control_planes,
        workers=plan.spec.workers,
        nodes=nodes,
        delays=plan.spec.delays,
        bridge_namespace=plan.bridge_namespace,
        router_namespace=plan.router_namespace,
        image=image,
    )
