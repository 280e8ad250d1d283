"""Bring a lab up, take it down, say how it is.  Synchronous (the CLI calls these directly; the
lab dispatcher runs them in a thread).

    up(spec, root)              -> LabState     (raises NoPermission, MissingDependency,
                                                 UsageError, InfrastructureError)
    down(root, lab_id=None)     -> DownReport   (idempotent; also removes crashed labs' leftovers)
    status(root)                -> LabStatus | None
    find_usable(root)           -> LabState | None   (the persistent lab a run uses)

``up`` lives here: it claims the lab's directory, then builds its network (bench/lab/network.py)
and starts its programs (bench/lab/launch.py) and its add-ons (bench/lab/addons.py), removing
everything again when any step fails.
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
from collections.abc import Sequence
from pathlib import Path

from talbench.agents import wire
from talbench.bench.errors import InfrastructureError, MissingDependency, UsageError
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.addons import AgentLauncher, LabAddOn
from talbench.bench.lab.launch import AGENT_MODULE, launch_agents, launch_delayline, wait_agents_ready
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.network import build_network
from talbench.bench.lab.state import LabNode, LabState, Leftovers, Owner
from talbench.bench.lab.status import LabStatus, NodeStatus, find_usable, status
from talbench.bench.lab.teardown import DownReport, down, remove_lab, remove_leftovers
from talbench.bench.lab.topology import LabPlan, LabSpec, lab_id_of_namespace, new_lab_id, plan_lab

__all__ = ["DownReport", "LabStatus", "NodeStatus", "down", "find_usable", "remove_leftovers", "status", "up"]

DEFAULT_AGENT_READY_TIMEOUT = 20.0
SMALL_LAB = 4  # nodes the base ready timeouts were set for
AGENT_START_PER_NODE = 1.5  # seconds more per agent beyond SMALL_LAB
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def up(
    spec: LabSpec,
    root: Path,
    *,
    lab_id: str | None = None,
    persistent: bool = True,
    start_agents: bool = True,
    wait_ready: bool = True,
    agent_ready_timeout: float | None = None,  # default: ready_timeout(the launcher's base, nodes)
    agent_port: int = wire.DEFAULT_PORT,
    launcher: AgentLauncher | None = None,
    addons: Sequence[LabAddOn] = (),
) -> LabState:
    """Build the lab ``spec`` under ``root`` and start its agents; on any failure (or Ctrl-C)
    remove what was built and re-raise.  ``persistent`` labs outlive this process (``talbench lab
    up``); others are the caller's to remove and count as leftovers once the caller is gone.
    ``launcher`` starts the agents instead of plain processes, and ``addons`` run in order once
    the agents are ready (bench/lab/addons.py: what either leaves behind is on record for
    ``down``)."""
    require_root("lab up")
    ip = Ip.locate()
    if spec.delays and not Path("/dev/net/tun").exists():
        raise MissingDependency("--delay needs /dev/net/tun (the TUN driver)", hint="load it with: modprobe tun")
    if start_agents and launcher is None and importlib.util.find_spec(f"{AGENT_MODULE}.__main__") is None:
        raise MissingDependency(
            f"the talbench agent ({AGENT_MODULE}) is not installed", hint="pip install -e . in the venv"
        )
    root = Path(root).resolve()
    if persistent:
        existing = find_usable(root)
        if existing is not None:
            raise UsageError(f"a lab is already up under {root}: {existing.lab_id} (talbench lab down removes it)")
    lab_id = lab_id or new_lab_id()
    plan = plan_lab(spec, lab_id)
    lab_dir = root / lab_id
    socket_name = launcher.socket_name if launcher else "agent.sock"
    longest = max(len(str(lab_dir / "nodes" / n.name / socket_name)) for n in plan.nodes)
    if longest > MAX_SOCKET_PATH:
        raise UsageError(
            f"lab root {root} is too long for the agents' unix sockets (max {MAX_SOCKET_PATH} characters in all)"
        )

    state = _claim(ip, plan, lab_dir, persistent=persistent, port=agent_port, launcher=launcher)

    def record(leftovers: Leftovers) -> None:
        nonlocal state
        others = tuple(r for r in state.leftovers if r.name != leftovers.name)
        state = state.with_changes(leftovers=(*others, leftovers))
        lab_state.save_leftovers(lab_id, state.leftovers)  # beside the index: outlives the lab's directory
        lab_state.save_state(state)

    try:
        build_network(ip, plan)
        if plan.router_namespace:
            state = state.with_changes(delayline_pid=launch_delayline(ip, plan, lab_dir))
            lab_state.save_state(state)
        if start_agents:
            if launcher is not None:
                record(launcher.leftovers(lab_id))
            state = launch_agents(ip, state, launcher)
            lab_state.save_state(state)
            if wait_ready:
                base = launcher.ready_timeout if launcher else DEFAULT_AGENT_READY_TIMEOUT
                agent_ready_timeout = agent_ready_timeout or ready_timeout(len(state.nodes), base)
                problems = wait_agents_ready(state, agent_ready_timeout)
                if problems:
                    detail = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
                    raise InfrastructureError(f"lab agents not ready within {agent_ready_timeout:g}s: {detail}")
        for addon in addons:
            addon.up(ip, state, record)
        state = state.with_changes(status=lab_state.STATUS_UP)
        lab_state.save_state(state)
        return state
    except BaseException:
        with contextlib.suppress(Exception):  # the original error says more than a teardown one
            remove_lab(ip, lab_id, lab_dir, term_timeout=2.0)
        raise


def ready_timeout(nodes: int = SMALL_LAB, base: float = DEFAULT_AGENT_READY_TIMEOUT) -> float:
    """How long agents get to answer health by default: the base (a launcher's, or a process's),
    and AGENT_START_PER_NODE more for each agent beyond a small lab's (they all start
    at once, and each takes CPU to start: a large lab on few cores needs longer)."""
    return base + AGENT_START_PER_NODE * max(0, nodes - SMALL_LAB)


def _claim(
    ip: Ip, plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int, launcher: AgentLauncher | None
) -> LabState:
    """Create the lab's directory, token and state, and register it in the index, before any
    namespace exists; a lab id already in use (here or in another root) is refused untouched."""
    taken = InfrastructureError(f"lab id {plan.lab_id} is already in use (try again)")
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        lab_dir.mkdir(mode=0o700)
    except FileExistsError as exc:
        raise taken from exc
    try:
        state = _initial_state(plan, lab_dir, persistent=persistent, port=port, launcher=launcher)
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


def _initial_state(
    plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int, launcher: AgentLauncher | None = None
) -> LabState:
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
            socket_name=launcher.socket_name if launcher else "agent.sock",
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
        launcher=dict(launcher.description()) if launcher else None,
    )
