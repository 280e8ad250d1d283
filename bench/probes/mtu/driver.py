"""Path MTU probe, coordinator side: every agent searches the path MTU to each peer it owes
(agents/probes/mtu/probe.py); a pair's figure is the smaller of its two directions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talbench.agents.params import wire
from talbench.agents.probes.mtu import probe as mtu_agent
from talbench.agents.probes.mtu.probe import MtuSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.peer_jobs import estimate_peer_jobs, run_peer_jobs
from talbench.bench.units import Dimension

JOB = mtu_agent.PROBE.jobs[0]


class MtuDriver(DeclaredDriver[MtuSettings]):
    name = "mtu"
    declaration = mtu_agent.PROBE
    settings_model = MtuSettings

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: MtuSettings, progress: Progress
    ) -> list[Measurement]:
        return await run_peer_jobs(JOB, keys, fleet, lambda peers: {**wire(settings), "peers": peers}, progress)

    def metrics(self) -> Sequence[Metric]:
        return MTU_METRICS

    def cost(self, keys: frozenset[ResultKey], settings: MtuSettings, nodes: Sequence[Node]) -> ProbeCost:
        """Every agent searches its peers at once: the longest search's own time limit; a few
        probe packets per size tried, no stream."""
        sizes = (settings.high - settings.low).bit_length() + 2
        return estimate_peer_jobs(
            JOB,
            keys,
            nodes,
            lambda peers: {**wire(settings), "peers": peers},
            note=f"a binary search of about {sizes} sizes per peer, {settings.attempts} probe(s) per size",
        )

    def budget(self, settings: MtuSettings) -> int | None:
        return settings.max_peers


def _direction(m: Measurement) -> str:
    data: dict[str, Any] = dict(m.data)
    value = data.get("mtu")
    ceiling = data.get("ceiling")
    capped = " (search ceiling)" if value is not None and value == ceiling else ""
    return f"{m.key.node}->{m.key.peer} {value if value is not None else '-'}{capped}"


def _observe_path(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    detail = ", ".join(_direction(m) for m in measurements)
    for m in measurements:
        if m.data.get("mtu") is None:
            reason = m.data.get("error") or "no figure"
            return Observation(None, 0, invalid=f"{m.key.node}->{m.key.peer}: {reason}", detail=detail)
    value = min(int(m.data["mtu"]) for m in measurements)
    probes = sum(len(m.data.get("tried") or ()) for m in measurements)
    return Observation(float(value), probes, detail=detail)


MTU_METRICS: tuple[Metric, ...] = (
    Metric(
        "mtu.path",
        "mtu",
        SubjectKind.PAIR,
        Dimension.BYTES,
        False,
        _observe_path,
        "largest IP packet that crosses unfragmented (DF set), smaller direction",
    ),
)

DRIVER = MtuDriver()
