"""What a metric is, and the progress sink: pure records the judge, the plan and the scenario
parser read.  No I/O is reachable from here (the layer contract in .importlinter holds it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from talbench.bench.model import CLUSTER_NODE, Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.units import Dimension


class Progress(Protocol):
    """Live progress sink passed in by the caller (the CLI renders it; tests collect it)."""

    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None: ...


@dataclass(frozen=True)
class ProbeCost:
    """What a probe will cost, known before it runs (``talbench run --dry-run``): how long at
    most, and per node the streams it sends and echoes, the packets per second that makes and the
    bytes it writes to disk.  None and empty maps where the probe does not say."""

    probe: str
    duration_s: float | None = None
    streams: Mapping[str, int] = field(default_factory=dict)
    packets_per_s: Mapping[str, float] = field(default_factory=dict)
    disk_bytes: Mapping[str, int] = field(default_factory=dict)
    note: str = ""


class NullProgress:
    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None:
        return None


@dataclass(frozen=True)
class Metric:
    """A named figure derived from one probe's raw results for one subject.

    ``needs`` lists the ResultKeys a subject requires (default: for a pair both directions, for
    a node the node's own result); ``observe`` turns those measurements into an Observation.
    """

    name: str  # "rtt.p99"
    probe: str  # "rtt"
    kind: SubjectKind
    dimension: Dimension
    lower_is_better: bool
    observe: Callable[[Subject, Sequence[Measurement], Sequence[Node]], Observation]
    description: str = ""
    needs: Callable[[Subject], tuple[ResultKey, ...]] | None = field(default=None, compare=False)
    # False for figures that do not depend on timing (sizes, counts, disk kind, KubeSpan state): a
    # CPU-throttled agent still reads them right, so throttling does not make them invalid.
    timed: bool = True
    # what only a Kubernetes node has (KubePrism's 127.0.0.1:7445): the process lab, whose nodes
    # are network namespaces without a kubelet, cannot be judged on it (an info verdict says so)
    needs_kubernetes: bool = False

    def keys_for(self, subject: Subject) -> tuple[ResultKey, ...]:
        if self.needs is not None:
            return self.needs(subject)
        if self.kind is SubjectKind.PAIR:
            a, b = subject.nodes
            return (ResultKey(self.probe, a, b), ResultKey(self.probe, b, a))
        if self.kind is SubjectKind.NODE:
            return (ResultKey(self.probe, subject.nodes[0]),)
        return (ResultKey(self.probe, CLUSTER_NODE),)
