"""How a lab is: its condition (up, being created, crashed), its agents' health, and which lab
under a root a run uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from talbench.bench.lab import state as lab_state
from talbench.bench.lab.addons import AddOnStatus, LabAddOn
from talbench.bench.lab.launch import agent_problem
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.state import LabState, StateError
from talbench.bench.lab.topology import NodeDelay
from talbench.bench.model import Role


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: Role
    address: str
    namespace: str
    namespace_exists: bool
    agent_pid: int | None
    agent: str  # "ok", or why not ("no agent socket", "agent exited", ...)
    delay: NodeDelay | None

    @property
    def healthy(self) -> bool:
        return self.agent == "ok"


@dataclass(frozen=True)
class LabStatus:
    lab_id: str
    lab_dir: Path
    created: float
    condition: str  # "up", "creating", "crashed: <why>"
    persistent: bool
    owner_pid: int
    nodes: tuple[NodeStatus, ...]
    delays: tuple[NodeDelay, ...]
    delayline: str | None  # None without delays; "running" or why not
    other_labs: tuple[str, ...] = field(default=())  # further lab dirs under the same root
    addons: tuple[AddOnStatus, ...] = ()  # the add-ons the caller asked about, that this lab has

    @property
    def healthy(self) -> bool:
        return (
            self.condition == "up"
            and all(n.healthy for n in self.nodes)
            and self.delayline in (None, "running")
            and all(addon.healthy for addon in self.addons)
        )

    def render(self) -> str:
        """A short human description (the CLI prints it)."""
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        kind = "persistent" if self.persistent else f"owned by pid {self.owner_pid}"
        out = [f"lab {self.lab_id}: {self.condition} ({kind}), {self.lab_dir}"]
        for node in self.nodes:
            delay = f", delay {node.delay}" if node.delay else ""
            out.append(f"  {node.name:<5} {node.role.value:<13} {node.address:<12} agent {node.agent}{delay}")
        if self.delayline is not None:
            out.append(f"  delay line: {self.delayline}")
        for addon in self.addons:
            out += addon.lines()
        if self.other_labs:
            out.append(f"  other labs under this root: {', '.join(self.other_labs)}")
        return out


def lab_condition(ip: Ip, state: LabState, namespaces: Iterable[str] | None = None) -> str:
    """ "up", "creating" or "crashed: why" (from the lab's state, its owner and its namespaces)."""
    present = set(ip.netns_list() if namespaces is None else namespaces)
    missing = [ns for ns in state.namespaces if ns not in present]
    owner_alive = state.owner.alive()
    if state.status == lab_state.STATUS_UP:
        if not state.persistent and not owner_alive:
            return f"crashed: its owner (pid {state.owner.pid}) is gone"
        if missing:
            return f"crashed: {len(missing)} of its namespaces are gone"
        return "up"
    if owner_alive:
        return "creating"
    return f"crashed while being created (pid {state.owner.pid} is gone)"


def find_usable(root: Path) -> LabState | None:
    """The persistent lab that is up under ``root`` (what ``run --target lab`` uses), if any."""
    ip = Ip.locate()
    present = ip.netns_list()
    usable: list[LabState] = []
    for lab_dir in lab_state.lab_dirs(Path(root)):
        try:
            state = lab_state.load_state(lab_dir)
        except StateError:
            continue
        if state.persistent and lab_condition(ip, state, present) == "up":
            usable.append(state)
    return max(usable, key=lambda s: s.created, default=None)


def status(root: Path, *, health_timeout: float = 2.0, addons: Sequence[LabAddOn] = ()) -> LabStatus | None:
    """The lab under ``root`` (the persistent one that is up, else the newest), or None; with
    how each of ``addons`` is on it (bench/lab/addons.py)."""
    require_root("lab status")
    ip = Ip.locate()
    present = ip.netns_list()
    states: list[LabState] = []
    broken: list[str] = []
    for lab_dir in lab_state.lab_dirs(Path(root).resolve()):
        try:
            states.append(lab_state.load_state(lab_dir))
        except StateError:
            broken.append(lab_dir.name)
    if not states:
        return None
    usable = [s for s in states if s.persistent and lab_condition(ip, s, present) == "up"]
    chosen = max(usable or states, key=lambda s: s.created)
    condition = lab_condition(ip, chosen, present)
    nodes = tuple(
        NodeStatus(
            name=node.name,
            role=node.role,
            address=node.address,
            namespace=node.namespace,
            namespace_exists=node.namespace in present,
            agent_pid=node.pid,
            agent=(agent_problem(node, health_timeout) or "ok") if node.pid else "not started",
            delay=next((d for d in chosen.delays if d.node == node.name), None),
        )
        for node in chosen.nodes
    )
    delayline = None
    if chosen.router_namespace:
        running = chosen.delayline_pid is not None and chosen.delayline_pid in ip.netns_pids(chosen.router_namespace)
        delayline = "running" if running else "not running"
    others = tuple(s.lab_id for s in states if s is not chosen) + tuple(broken)
    addon_status = tuple(found for addon in addons if (found := addon.status(chosen)) is not None)
    return LabStatus(
        lab_id=chosen.lab_id,
        lab_dir=chosen.lab_dir,
        created=chosen.created,
        condition=condition,
        persistent=chosen.persistent,
        owner_pid=chosen.owner.pid,
        nodes=nodes,
        delays=chosen.delays,
        delayline=delayline,
        other_labs=others,
        addons=addon_status,
    )
