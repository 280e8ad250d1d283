"""What a lab looks like: its spec (node counts, delays) and the address plan.  Pure: no I/O.

Every lab lives in its own set of network namespaces, so two labs may use the same addresses.

    bridge namespace  tb-<lab>-br : bridge br0, one veth leg per node on the bridge segment
    node namespaces   tb-<lab>-cp1 ... tb-<lab>-w1 : one interface eth0, no default route
    router namespace  tb-<lab>-rt : only when some node is delayed; a leg "eth0" on the bridge
                                    (10.213.0.1) and one leg per delayed node, each on its own
                                    /24; forwarded packets go through the delay line's TUN

Undelayed nodes sit on the bridge segment 10.213.0.0/24 and talk to each other directly; they
reach delayed nodes through the router (a route for the lab /16, never a default route).
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from talbench.bench.errors import UsageError
from talbench.bench.model import CONTROL_PLANE_LABEL, Node, Role
from talbench.bench.units import UnitError, parse_duration

NAMESPACE_PREFIX = "tb-"
LAB_ID_PATTERN = r"lab[0-9a-f]{6}"
_LAB_ID = re.compile(rf"^{LAB_ID_PATTERN}$")
_LAB_NAMESPACE = re.compile(rf"^{NAMESPACE_PREFIX}({LAB_ID_PATTERN})-[a-z0-9]+$")

LAB_NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
BRIDGE_SEGMENT = ipaddress.IPv4Network("10.213.0.0/24")
ROUTER_BRIDGE_ADDRESS = "10.213.0.1"
FIRST_NODE_HOST = 10  # undelayed nodes: 10.213.0.10, .11, ...
SEGMENT_PREFIX = 24

BRIDGE_DEVICE = "br0"
NODE_DEVICE = "eth0"  # a node's only interface, and the router's bridge leg
TUN_DEVICE = "tbdelay"
DELAY_TABLE = 100  # the router's policy routing table that leads into the TUN
DELAY_RULE_PRIORITY = 100

MAX_CONTROL_PLANES = 32
MAX_WORKERS = 64
DRY_RUN_MAX_WORKERS = 100_000  # run --dry-run plans a lab of any size and builds nothing
MAX_DELAY_MS = 5000.0
HOSTNAME_LABEL = "kubernetes.io/hostname"
CONTROL_PLANE_TAINT = f"{CONTROL_PLANE_LABEL}:NoSchedule"


@dataclass(frozen=True)
class NodeDelay:
    """An added one-way delay on every packet to or from ``node`` (jitter: uniform +/-)."""

    node: str
    delay_ms: float
    jitter_ms: float = 0.0

    def __str__(self) -> str:
        return f"{self.node}={self.delay_ms:g}ms" + (f":{self.jitter_ms:g}ms" if self.jitter_ms else "")


@dataclass(frozen=True)
class LabSpec:
    control_planes: int = 3
    workers: int = 1
    delays: tuple[NodeDelay, ...] = ()

    @property
    def node_names(self) -> tuple[str, ...]:
        return node_names(self.control_planes, self.workers)

    def delay_of(self, node: str) -> NodeDelay | None:
        return next((d for d in self.delays if d.node == node), None)


@dataclass(frozen=True)
class NodePlan:
    name: str
    role: Role
    namespace: str
    address: str
    prefix: int
    via: str | None  # the router address the lab /16 is routed through (None: no router)
    peer_device: str  # the other end of the node's veth: in the bridge or the router namespace
    delay: NodeDelay | None

    @property
    def delayed(self) -> bool:
        return self.delay is not None

    @property
    def segment(self) -> str:
        """The node's /24 (the bridge segment or its own one behind the router)."""
        return str(ipaddress.IPv4Interface(f"{self.address}/{self.prefix}").network)

    def labels(self) -> dict[str, str]:
        labels = {HOSTNAME_LABEL: self.name}
        if self.role is Role.CONTROL_PLANE:
            labels[CONTROL_PLANE_LABEL] = ""
        return labels

    def taints(self) -> tuple[str, ...]:
        return (CONTROL_PLANE_TAINT,) if self.role is Role.CONTROL_PLANE else ()

    def to_node(self) -> Node:
        return Node(self.name, self.role, self.address, self.labels(), self.taints())


@dataclass(frozen=True)
class RouterLeg:
    """One router interface: its device name, address and prefix."""

    device: str
    address: str
    prefix: int


@dataclass(frozen=True)
class LabPlan:
    lab_id: str
    spec: LabSpec
    bridge_namespace: str
    router_namespace: str | None
    nodes: tuple[NodePlan, ...]
    router_legs: tuple[RouterLeg, ...]  # empty without router

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, bridge first (the order they are created in)."""
        extra = (self.router_namespace,) if self.router_namespace else ()
        return (self.bridge_namespace, *extra, *(n.namespace for n in self.nodes))

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def new_lab_id() -> str:
    return "lab" + secrets.token_hex(3)


def is_lab_id(text: str) -> bool:
    return bool(_LAB_ID.match(text))


def namespace_name(lab_id: str, suffix: str) -> str:
    return f"{NAMESPACE_PREFIX}{lab_id}-{suffix}"


def lab_id_of_namespace(namespace: str) -> str | None:
    """The lab id of a lab namespace (``tb-lab1a2b3c-cp1`` -> ``lab1a2b3c``); None for others,
    including the ``tb-<random>`` namespaces other talbench tests create."""
    match = _LAB_NAMESPACE.match(namespace)
    return match.group(1) if match else None


def node_names(control_planes: int, workers: int) -> tuple[str, ...]:
    return tuple(f"cp{i}" for i in range(1, control_planes + 1)) + tuple(f"w{i}" for i in range(1, workers + 1))


def make_spec(
    control_planes: int = 3, workers: int = 1, delay_options: Iterable[str] = (), *, max_workers: int = MAX_WORKERS
) -> LabSpec:
    """A LabSpec from CLI options; UsageError (one line) for anything out of range."""
    if not _is_count(control_planes) or not 1 <= control_planes <= MAX_CONTROL_PLANES:
        raise UsageError(f"--control-planes must be between 1 and {MAX_CONTROL_PLANES}, got {control_planes!r}")
    if not _is_count(workers) or not 0 <= workers <= max_workers:
        raise UsageError(f"--workers must be between 0 and {max_workers}, got {workers!r}")
    names = node_names(control_planes, workers)
    return LabSpec(control_planes, workers, parse_delays(delay_options, names))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_delays(options: Iterable[str], nodes: Sequence[str]) -> tuple[NodeDelay, ...]:
    delays: list[NodeDelay] = []
    for option in options:
        delay = parse_delay(option)
        if delay.node not in nodes:
            raise UsageError(f"--delay {option}: unknown node {delay.node!r} (lab nodes: {', '.join(nodes)})")
        if any(d.node == delay.node for d in delays):
            raise UsageError(f"--delay {option}: node {delay.node!r} is delayed twice")
        delays.append(delay)
    return tuple(delays)


def parse_delay(option: str) -> NodeDelay:
    """``cp3=10ms``, ``cp3=10`` (milliseconds), ``cp3=10ms:2ms`` (delay : jitter)."""
    node, sep, value = str(option).partition("=")
    node = node.strip()
    if not sep or not node or not value.strip():
        raise UsageError(f"--delay {option!r}: expected NODE=MS[:JITTER_MS], e.g. cp3=10ms or cp3=10ms:2ms")
    delay_text, _, jitter_text = value.partition(":")
    delay_ms = _milliseconds(option, delay_text, "delay")
    jitter_ms = _milliseconds(option, jitter_text, "jitter") if jitter_text.strip() else 0.0
    if not 0 < delay_ms <= MAX_DELAY_MS:
        raise UsageError(f"--delay {option}: delay must be above 0 and at most {MAX_DELAY_MS:g}ms")
    if jitter_ms > delay_ms:
        raise UsageError(f"--delay {option}: jitter ({jitter_ms:g}ms) must not exceed the delay ({delay_ms:g}ms)")
    return NodeDelay(node, delay_ms, jitter_ms)


def _milliseconds(option: str, text: str, what: str) -> float:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            seconds = parse_duration(text)
        except UnitError as exc:
            raise UsageError(f"--delay {option}: bad {what} {text!r} (e.g. 10ms, 10, 500us)") from exc
        number = seconds * 1000.0
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"--delay {option}: bad {what} {text!r}")
    return number


def plan_lab(spec: LabSpec, lab_id: str) -> LabPlan:
    """Names and addresses of every namespace and interface of the lab ``lab_id``."""
    if not is_lab_id(lab_id):
        raise UsageError(f"not a lab id: {lab_id!r}")
    has_router = bool(spec.delays)
    router_ns = namespace_name(lab_id, "rt") if has_router else None
    legs: list[RouterLeg] = []
    if has_router:
        legs.append(RouterLeg(NODE_DEVICE, ROUTER_BRIDGE_ADDRESS, SEGMENT_PREFIX))
    nodes: list[NodePlan] = []
    bridge_host = FIRST_NODE_HOST
    delayed_segment = 0
    control_planes = set(node_names(spec.control_planes, 0))
    for name in spec.node_names:
        role = Role.CONTROL_PLANE if name in control_planes else Role.WORKER
        delay = spec.delay_of(name)
        if delay is None:
            address = str(BRIDGE_SEGMENT.network_address + bridge_host)
            bridge_host += 1
            via = ROUTER_BRIDGE_ADDRESS if has_router else None
        else:
            delayed_segment += 1
            segment = ipaddress.IPv4Network(f"10.213.{delayed_segment}.0/{SEGMENT_PREFIX}")
            address = str(segment.network_address + 2)
            via = str(segment.network_address + 1)
            legs.append(RouterLeg(f"d-{name}", via, SEGMENT_PREFIX))
        nodes.append(
            NodePlan(
                name=name,
                role=role,
                namespace=namespace_name(lab_id, name),
                address=address,
                prefix=SEGMENT_PREFIX,
                via=via,
                peer_device=f"d-{name}" if delay else f"n-{name}",
                delay=delay,
            )
        )
    return LabPlan(lab_id, spec, namespace_name(lab_id, "br"), router_ns, tuple(nodes), tuple(legs))
