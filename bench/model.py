"""Plain frozen records used everywhere inside the coordinator.

Dicts and JSON exist only at the edges (agent wire, run.json, scenario YAML); inside, these
records are what moves between layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from talbench.bench.units import Dimension, Quantity

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
STORAGE_LABEL = "node-role.kubernetes.io/storage"
# The node name of a cluster-wide result (ResultKey("etcd", CLUSTER_NODE)): no agent owns it.
CLUSTER_NODE = "cluster"


class Role(str, Enum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


@dataclass(frozen=True)
class Node:
    """A node of the cluster under test, as the dispatcher found it."""

    name: str
    role: Role
    address: str  # the address agents use to reach each other (node IP)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    taints: tuple[str, ...] = ()  # "key=value:Effect" or "key:Effect"

    @property
    def is_control_plane(self) -> bool:
        return self.role is Role.CONTROL_PLANE


class Status(str, Enum):
    """Verdict of one check for one subject.  Only PASS, WARN and INFO let a run exit 0."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NO_DATA = "no_data"  # an expected result never came: never a pass
    INVALID = "invalid"  # the measurement exists but cannot be trusted
    INFO = "info"  # reported, not judged (a check without limits)

    @property
    def blocks(self) -> bool:
        return self in (Status.FAIL, Status.NO_DATA, Status.INVALID)


@dataclass(frozen=True, order=True)
class ResultKey:
    """One expected result: probe ``probe`` run by agent ``node`` (towards ``peer`` if any)."""

    probe: str
    node: str
    peer: str | None = None

    def __str__(self) -> str:
        return f"{self.probe}:{self.node}" + (f"->{self.peer}" if self.peer else "")

    def sort_key(self) -> tuple[str, str, str]:
        """Orders node keys (peer None) and pair keys of the same probe and node together."""
        return (self.probe, self.node, self.peer or "")


@dataclass(frozen=True)
class Measurement:
    """What came back for one ResultKey.  ``ok`` False means the agent answered with an error
    or never answered; ``error`` says which.  ``data`` is the probe's raw result (samples)."""

    key: ResultKey
    ok: bool
    data: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    error: str | None = None
    started: float | None = None  # unix seconds
    ended: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    error_kind: str | None = None  # agents.wire ERROR_*; "unavailable": missing tool or permission


class Scope(str, Enum):
    CONTROL_PLANE_PAIRS = "control-plane-pairs"
    OTHER_PAIRS = "other-pairs"  # pairs with at least one node that is not a control plane
    ALL_PAIRS = "all-pairs"
    CONTROL_PLANE_NODES = "control-plane-nodes"
    WORKER_NODES = "worker-nodes"
    STORAGE_NODES = "storage-nodes"  # nodes labelled node-role.kubernetes.io/storage
    ALL_NODES = "all-nodes"
    CLUSTER = "cluster"


class SubjectKind(str, Enum):
    PAIR = "pair"
    NODE = "node"
    CLUSTER = "cluster"


SCOPE_KIND = {
    Scope.CONTROL_PLANE_PAIRS: SubjectKind.PAIR,
    Scope.OTHER_PAIRS: SubjectKind.PAIR,
    Scope.ALL_PAIRS: SubjectKind.PAIR,
    Scope.CONTROL_PLANE_NODES: SubjectKind.NODE,
    Scope.WORKER_NODES: SubjectKind.NODE,
    Scope.STORAGE_NODES: SubjectKind.NODE,
    Scope.ALL_NODES: SubjectKind.NODE,
    Scope.CLUSTER: SubjectKind.CLUSTER,
}


@dataclass(frozen=True, order=True)
class Subject:
    """What a verdict is about: () the cluster, (a,) a node, (a, b) an unordered pair (sorted)."""

    nodes: tuple[str, ...]

    @property
    def kind(self) -> SubjectKind:
        return (SubjectKind.CLUSTER, SubjectKind.NODE, SubjectKind.PAIR)[len(self.nodes)]

    def __str__(self) -> str:
        return CLUSTER_NODE if not self.nodes else "-".join(self.nodes)


@dataclass(frozen=True)
class Check:
    """One line of a scenario: judge ``metric`` over ``scope`` against warn/fail limits."""

    name: str
    metric: str
    scope: Scope
    warn: Quantity | None
    fail: Quantity | None
    source: str
    description: str = ""
    line: int | None = None  # where it stands in its file

    @property
    def probe(self) -> str:
        return self.metric.split(".", 1)[0]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    checks: tuple[Check, ...]
    # per-probe settings as written (validated by each probe's driver)
    probes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False, compare=False)
    schema: int = 1

    @property
    def probe_names(self) -> tuple[str, ...]:
        return tuple(sorted({check.probe for check in self.checks}))


@dataclass(frozen=True)
class Observation:
    """A metric's value for one subject, computed from raw results (never from other summaries)."""

    value: float | None
    samples: int = 0
    invalid: str | None = None  # why it cannot be trusted (too few samples, saturated CPU)
    detail: str = ""  # extra figures for the report ("loss 0.2 %, n=400")
    # Why the probe deliberately did not measure this subject (a bounded sample that the plan
    # expected and the driver answered for): reported, not judged, and never a pass.
    not_measured: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Verdict:
    check: str
    metric: str
    subject: Subject
    status: Status
    observed: float | None
    dimension: Dimension
    threshold: str  # "< 15ms (warn at 10ms)"
    message: str
    source: str
    detail: str = ""
    context: str = ""  # what the busiest measured node's host was doing (bench/context.py)


@dataclass(frozen=True)
class RunRecord:
    """Everything one run produced; what run.json and junit.xml are written from."""

    run_id: str
    scenario: Scenario
    target: str
    quick: bool
    nodes: tuple[Node, ...]
    started: float
    ended: float
    results: tuple[Measurement, ...]
    verdicts: tuple[Verdict, ...]
    checks: tuple[Check, ...]  # the checks that ran (after --only)
    unready: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    timings: Mapping[str, tuple[float, float]] = field(default_factory=dict, hash=False, compare=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # first measurements of results measured again on a busy host (bench/retry.py)
    superseded: tuple[Measurement, ...] = ()
