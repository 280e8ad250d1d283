"""What a probe is, coordinator side: a driver that orchestrates agents, and the metrics that
turn its raw results into observations.

The plan (bench.plan) computes every expected ResultKey up front from the scenario and the
nodes; a driver is handed the keys of its probe and returns Measurements for them.  Keys it does
not return become no_data: a missing result is never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from talbench.bench.dispatch.base import Fleet
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.units import Dimension


class Progress(Protocol):
    """Live progress sink passed in by the caller (the CLI renders it; tests collect it)."""

    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None: ...


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

    def keys_for(self, subject: Subject) -> tuple[ResultKey, ...]:
        if self.needs is not None:
            return self.needs(subject)
        if self.kind is SubjectKind.PAIR:
            a, b = subject.nodes
            return (ResultKey(self.probe, a, b), ResultKey(self.probe, b, a))
        if self.kind is SubjectKind.NODE:
            return (ResultKey(self.probe, subject.nodes[0]),)
        return (ResultKey(self.probe, "cluster"),)


class ProbeDriver(Protocol):
    name: str  # "rtt"

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> Any:
        """Validate the scenario's settings for this probe (raise ScenarioError); ``quick``
        scales durations down."""

    async def run(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: Any, progress: Progress
    ) -> list[Measurement]:
        """Measure what ``keys`` ask for; bounded in time; never raises for one agent's failure
        (that agent's keys come back with ok=False or not at all)."""

    def metrics(self) -> Sequence[Metric]:
        """The metrics this probe provides."""
