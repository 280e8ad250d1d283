"""Bring a lab up, take it down, say how it is.  Synchronous (the CLI calls these directly; the
lab dispatcher runs them in a thread).

    up(spec, root)              -> LabState     (raises NoPermission, MissingDependency,
                                                 UsageError, InfrastructureError)
    down(root, lab_id=None)     -> DownReport   (idempotent; also removes crashed labs' leftovers)
    status(root)                -> LabStatus | None

Nothing of a lab exists in the root network namespace: veths are created inside the lab's own
namespaces, no lab namespace has a default route, and the coordinator reaches agents through
unix sockets in the nodes' directories.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from talbench.agents import wire
from talbench.bench.errors import InfrastructureError, MissingDependency, UsageError
from talbench.bench.lab import processes, state as lab_state
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.state import LabNode, LabState, Owner, StateError, StateMissing
from talbench.bench.lab.topology import (
    BRIDGE_DEVICE,
    DELAY_RULE_PRIORITY,
    DELAY_TABLE,
    LAB_NETWORK,
    NODE_DEVICE,
    TUN_DEVICE,
    LabPlan,
    LabSpec,
    NodeDelay,
    NodePlan,
    is_lab_id,
    lab_id_of_namespace,
    new_lab_id,
    plan_lab,
)
from talbench.bench.model import Role

AGENT_MODULE = "talbench.agents"
DELAYLINE_MODULE = "talbench.bench.lab.delayline"
DEFAULT_AGENT_READY_TIMEOUT = 20.0
DEFAULT_TERM_TIMEOUT = 10.0  # an agent stops what its probes left running (etcd members) on SIGTERM
DELAYLINE_READY_TIMEOUT = 10.0
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL

_NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
_ROUTER_SYSCTLS = {
    **_NO_IPV6,
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.ip_forward": "1",
}


@dataclass(frozen=True)
class DownReport:
    """What ``down`` removed."""

    labs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    processes: tuple[int, ...] = ()
    paths: tuple[str, ...] = ()
    survivors: tuple[int, ...] = ()  # processes that would not die even after SIGKILL

    @property
    def removed_anything(self) -> bool:
        return bool(self.labs or self.namespaces or self.processes or self.paths)

    def __str__(self) -> str:
        if not self.removed_anything:
            return "nothing to remove"
        text = (
            f"removed lab {', '.join(self.labs) or '-'}: {len(self.namespaces)} namespaces, "
            f"{len(self.processes)} processes, {len(self.paths)} directories"
        )
        if self.survivors:
            text += f"; processes that would not die: {', '.join(map(str, self.survivors))}"
        return text

    def merge(self, other: DownReport) -> DownReport:
        return DownReport(
            self.labs + other.labs,
            self.namespaces + other.namespaces,
            self.processes + other.processes,
            self.paths + other.paths,
            self.survivors + other.survivors,
        )


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

    @property
    def healthy(self) -> bool:
        return self.condition == "up" and all(n.healthy for n in self.nodes) and self.delayline in (None, "running")

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
        if self.other_labs:
            out.append(f"  other labs under this root: {', '.join(self.other_labs)}")
        return out


# -- up ----------------------------------------------------------------------------------------


def up(
    spec: LabSpec,
    root: Path,
    *,
    lab_id: str | None = None,
    persistent: bool = True,
    start_agents: bool = True,
    wait_ready: bool = True,
    agent_ready_timeout: float = DEFAULT_AGENT_READY_TIMEOUT,
    agent_port: int = wire.DEFAULT_PORT,
) -> LabState:
    """Build the lab ``spec`` under ``root`` and start its agents; on any failure (or Ctrl-C)
    remove what was built and re-raise.  ``persistent`` labs outlive this process (``talbench lab
    up``); others are the caller's to remove and count as leftovers once the caller is gone."""
    require_root("lab up")
    ip = Ip.locate()
    if spec.delays and not Path("/dev/net/tun").exists():
        raise MissingDependency("--delay needs /dev/net/tun (the TUN driver)", hint="load it with: modprobe tun")
    if start_agents and importlib.util.find_spec(f"{AGENT_MODULE}.__main__") is None:
        raise MissingDependency(f"the talbench agent ({AGENT_MODULE}) is not installed", hint="pip install -e . in the venv")
    root = Path(root).resolve()
    if persistent:
        existing = find_usable(root)
        if existing is not None:
            raise UsageError(f"a lab is already up under {root}: {existing.lab_id} (talbench lab down removes it)")
    lab_id = lab_id or new_lab_id()
    plan = plan_lab(spec, lab_id)
    lab_dir = root / lab_id
    longest = max(len(str(lab_dir / "nodes" / n.name / "agent.sock")) for n in plan.nodes)
    if longest > MAX_SOCKET_PATH:
        raise UsageError(
            f"lab root {root} is too long for the agents' unix sockets (max {MAX_SOCKET_PATH} characters in all)"
        )

    state = _claim(ip, plan, lab_dir, persistent=persistent, port=agent_port)
    try:
        _build_network(ip, plan)
        if plan.router_namespace:
            state = state.with_changes(delayline_pid=_start_delayline(ip, plan, lab_dir))
            lab_state.save_state(state)
        if start_agents:
            state = _start_agents(ip, state)
            lab_state.save_state(state)
            if wait_ready:
                problems = wait_agents_ready(state, agent_ready_timeout)
                if problems:
                    detail = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
                    raise InfrastructureError(f"lab agents not ready within {agent_ready_timeout:g}s: {detail}")
        state = state.with_changes(status=lab_state.STATUS_UP)
        lab_state.save_state(state)
        return state
    except BaseException:
        with contextlib.suppress(Exception):  # the original error says more than a teardown one
            _remove_lab(ip, lab_id, lab_dir, term_timeout=2.0)
        raise


def _claim(ip: Ip, plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int) -> LabState:
    """Create the lab's directory, token and state, and register it in the index, before any
    namespace exists; a lab id already in use (here or in another root) is refused untouched."""
    taken = InfrastructureError(f"lab id {plan.lab_id} is already in use (try again)")
    lab_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        lab_dir.mkdir(mode=0o700)
    except FileExistsError as exc:
        raise taken from exc
    try:
        state = _initial_state(plan, lab_dir, persistent=persistent, port=port)
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


def _initial_state(plan: LabPlan, lab_dir: Path, *, persistent: bool, port: int) -> LabState:
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
    )


def _build_network(ip: Ip, plan: LabPlan) -> None:
    br, rt = plan.bridge_namespace, plan.router_namespace
    ip.netns_add(br)
    ip.sysctl(br, _NO_IPV6)
    ip.batch([f"link add {BRIDGE_DEVICE} type bridge", f"link set {BRIDGE_DEVICE} up"], netns=br)
    if rt:
        ip.netns_add(rt)
        ip.sysctl(rt, _ROUTER_SYSCTLS)
        ip.batch(_bridge_leg("n-rt", rt), netns=br)
        bridge_leg = plan.router_legs[0]
        ip.batch(
            [
                "link set lo up",
                f"addr add {bridge_leg.address}/{bridge_leg.prefix} dev {NODE_DEVICE}",
                f"link set {NODE_DEVICE} up",
                f"tuntap add dev {TUN_DEVICE} mode tun",
                f"link set {TUN_DEVICE} up",
                f"route add {LAB_NETWORK} dev {TUN_DEVICE} table {DELAY_TABLE}",
                f"rule add iif {NODE_DEVICE} lookup {DELAY_TABLE} priority {DELAY_RULE_PRIORITY}",
            ],
            netns=rt,
        )
    for node in plan.nodes:
        _add_node(ip, plan, node)


def _bridge_leg(device: str, peer_namespace: str) -> list[str]:
    return [
        f"link add {device} type veth peer name {NODE_DEVICE} netns {peer_namespace}",
        f"link set {device} master {BRIDGE_DEVICE}",
        f"link set {device} up",
    ]


def _add_node(ip: Ip, plan: LabPlan, node: NodePlan) -> None:
    ip.netns_add(node.namespace)
    ip.sysctl(node.namespace, _NO_IPV6)
    if node.delayed:
        assert plan.router_namespace and node.via
        ip.batch(
            [
                f"link add {node.peer_device} type veth peer name {NODE_DEVICE} netns {node.namespace}",
                f"addr add {node.via}/{node.prefix} dev {node.peer_device}",
                f"link set {node.peer_device} up",
                f"rule add iif {node.peer_device} lookup {DELAY_TABLE} priority {DELAY_RULE_PRIORITY}",
            ],
            netns=plan.router_namespace,
        )
    else:
        ip.batch(_bridge_leg(node.peer_device, node.namespace), netns=plan.bridge_namespace)
    commands = ["link set lo up", f"addr add {node.address}/{node.prefix} dev {NODE_DEVICE}", f"link set {NODE_DEVICE} up"]
    if node.via:
        commands.append(f"route add {LAB_NETWORK} via {node.via}")
    ip.batch(commands, netns=node.namespace)


def _python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _start_delayline(ip: Ip, plan: LabPlan, lab_dir: Path) -> int:
    assert plan.router_namespace
    argv = [sys.executable, "-m", DELAYLINE_MODULE, "--tun", TUN_DEVICE]
    for node in plan.nodes:
        if node.delay:
            argv += ["--delay", f"{node.address}={node.delay.delay_ms:g}:{node.delay.jitter_ms:g}"]
    log = lab_dir / lab_state.DELAYLINE_LOG
    pid = processes.spawn(ip.exec_argv(plan.router_namespace, argv), log, env=_python_env())
    deadline = time.monotonic() + DELAYLINE_READY_TIMEOUT
    while time.monotonic() < deadline:
        if _tun_attached(ip, plan.router_namespace):
            return pid
        if not processes.alive(pid):
            raise InfrastructureError(f"the delay line exited at start: {processes.log_tail(log) or 'no output'}")
        time.sleep(0.05)
    raise InfrastructureError(f"the delay line did not attach to {TUN_DEVICE} within {DELAYLINE_READY_TIMEOUT:g}s")


def _tun_attached(ip: Ip, router_namespace: str) -> bool:
    out = ip.run("-o", "link", "show", TUN_DEVICE, netns=router_namespace, check=False)
    flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
    return "LOWER_UP" in flags


def _start_agents(ip: Ip, state: LabState) -> LabState:
    nodes = []
    for node in state.nodes:
        argv = [
            sys.executable,
            "-m",
            AGENT_MODULE,
            "--listen",
            f"{node.address}:{node.port}",
            "--unix",
            str(node.socket),
            "--token-file",
            str(state.token_file),
            "--node",
            node.name,
            "--data-dir",
            str(node.data_dir),
        ]
        pid = processes.spawn(ip.exec_argv(node.namespace, argv), node.log, env=_python_env())
        nodes.append(_replace_pid(node, pid))
        # record each pid as soon as it exists, so a crash here leaves nothing unaccounted
        lab_state.save_state(state.with_changes(nodes=tuple(nodes) + state.nodes[len(nodes) :]))
    return state.with_changes(nodes=tuple(nodes))


def _replace_pid(node: LabNode, pid: int | None) -> LabNode:
    return replace(node, pid=pid)


def agent_problem(node: LabNode, timeout: float = 2.0) -> str | None:
    """None when the node's agent answers health; else why not (one line)."""
    if node.pid is not None and not processes.alive(node.pid):
        tail = processes.log_tail(node.log, 3)
        return "agent exited" + (f": {tail}" if tail else "")
    return processes.agent_health(node.socket, timeout)


def wait_agents_ready(state: LabState, timeout: float) -> dict[str, str]:
    """Wait (bounded) until every agent answers health; returns node -> reason for the others."""
    deadline = time.monotonic() + timeout
    pending = {node.name: node for node in state.nodes}
    problems: dict[str, str] = {}
    while pending:
        for name, node in list(pending.items()):
            problem = agent_problem(node, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if problem is None:
                del pending[name]
                problems.pop(name, None)
            else:
                problems[name] = problem
                if problem.startswith("agent exited"):
                    del pending[name]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return problems


# -- finding labs --------------------------------------------------------------------------------


def lab_condition(ip: Ip, state: LabState, namespaces: Iterable[str] | None = None) -> str:
    """"up", "creating" or "crashed: why" (from the lab's state, its owner and its namespaces)."""
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


# -- down ----------------------------------------------------------------------------------------


def down(
    root: Path,
    lab_id: str | None = None,
    *,
    term_timeout: float = DEFAULT_TERM_TIMEOUT,
) -> DownReport:
    """Remove the lab ``lab_id`` under ``root`` (every lab under ``root`` when None), then the
    leftovers of crashed labs anywhere on this host.  Idempotent."""
    require_root("lab down")
    ip = Ip.locate()
    root = Path(root).resolve()
    if lab_id is not None:
        if not is_lab_id(lab_id):
            raise UsageError(f"not a lab id: {lab_id!r}")
        targets = {lab_id: root / lab_id}
    else:
        targets = {p.name: p for p in lab_state.lab_dirs(root)}
        for other_id, other_dir in lab_state.read_index().items():
            if other_dir is not None and other_dir.parent == root:
                targets.setdefault(other_id, other_dir)
    report = DownReport()
    for target_id, target_dir in sorted(targets.items()):
        report = report.merge(_remove_lab(ip, target_id, target_dir, term_timeout=term_timeout))
    return report.merge(remove_leftovers(term_timeout=term_timeout, ip=ip))


def remove_leftovers(
    *, term_timeout: float = DEFAULT_TERM_TIMEOUT, ip: Ip | None = None
) -> DownReport:
    """Remove what crashed labs left anywhere on this host: lab namespaces with no index entry,
    labs whose state directory is gone, and labs whose owner died (unless persistent and up).
    Live labs of other roots and other programs' ``tb-`` namespaces are left alone."""
    require_root("lab down")
    ip = ip or Ip.locate()
    present = ip.netns_list()
    index = lab_state.read_index()
    candidates = {lab for lab in map(lab_id_of_namespace, present) if lab} | set(index)
    report = DownReport()
    for lab_id in sorted(candidates):
        lab_dir = index.get(lab_id)
        if lab_dir is not None and _is_live(ip, lab_dir, present):
            continue
        report = report.merge(_remove_lab(ip, lab_id, lab_dir, term_timeout=term_timeout))
    return report


def _is_live(ip: Ip, lab_dir: Path, present: Iterable[str]) -> bool:
    """False for a crashed lab.  A lab.json that exists but cannot be read (another talbench
    version's schema) counts as live: only ``down`` of its own root removes it."""
    try:
        state = lab_state.load_state(lab_dir)
    except StateMissing:
        return False
    except StateError:
        return True
    return not lab_condition(ip, state, present).startswith("crashed")


def _remove_lab(ip: Ip, lab_id: str, lab_dir: Path | None, *, term_timeout: float) -> DownReport:
    """Kill every process in the lab's namespaces, delete them, remove its directory and index
    entry.  Works from the namespaces themselves, so a missing or corrupt lab.json is no obstacle."""
    recorded: list[int] = []
    if lab_dir is not None:
        try:
            state = lab_state.load_state(lab_dir)
            recorded = [n.pid for n in state.nodes if n.pid] + ([state.delayline_pid] if state.delayline_pid else [])
        except StateError:
            pass
    namespaces = [ns for ns in ip.netns_list() if lab_id_of_namespace(ns) == lab_id]
    killed: list[int] = []
    survivors: tuple[int, ...] = ()
    for _ in range(3):  # a dying process may have started another one meanwhile
        pids = sorted({pid for ns in namespaces for pid in ip.netns_pids(ns)} - {os.getpid()})
        if not pids:
            break
        killed += pids
        survivors = processes.terminate(pids, term_timeout=term_timeout)
    for pid in recorded:
        processes.reap(pid)  # our own children (agents this process spawned) leave no zombie
    deleted = [ns for ns in _deletion_order(namespaces, lab_id) if ip.netns_delete(ns)]
    paths: list[str] = []
    if lab_dir is not None and lab_dir.name == lab_id and lab_dir.exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
        paths.append(str(lab_dir))
    registered = lab_state.unregister(lab_id)
    touched = bool(deleted or killed or paths or registered)
    return DownReport((lab_id,) if touched else (), tuple(deleted), tuple(sorted(set(killed))), tuple(paths), survivors)


def _deletion_order(namespaces: list[str], lab_id: str) -> list[str]:
    """Nodes first, then the router, the bridge last."""
    tail = [f"tb-{lab_id}-rt", f"tb-{lab_id}-br"]
    return [ns for ns in namespaces if ns not in tail] + [ns for ns in tail if ns in namespaces]


# -- status --------------------------------------------------------------------------------------


def status(root: Path, *, health_timeout: float = 2.0) -> LabStatus | None:
    """The lab under ``root`` (the persistent one that is up, else the newest), or None."""
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
    )
