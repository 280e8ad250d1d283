"""RTT probe, coordinator side: every agent measures to every peer it owes (UDP echo), the
control-plane pairs first and on their own, then the others; past ``raw_limit`` samples the
others keep histograms instead of raw samples.  Metrics: bench/probes/rtt/metrics.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from talbench.agents.params import wire
from talbench.agents.probes.rtt import probe as rtt_agent
from talbench.agents.probes.rtt.probe import RttSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, ResultKey
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.peer_jobs import run_peer_jobs
from talbench.bench.probes.rtt.metrics import RTT_METRICS, compact

JOB = rtt_agent.PROBE.jobs[0]


def deadline(settings: RttSettings) -> float:
    """How long the coordinator waits for one agent's job, slack included."""
    return rtt_agent.time_limit(settings) + 10.0


def _as_job(settings: RttSettings, peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {**wire(settings), "peers": peers}


class RttDriver(DeclaredDriver[RttSettings]):
    name = "rtt"
    declaration = rtt_agent.PROBE
    settings_model = RttSettings

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> RttSettings:
        settings: RttSettings = super().settings(raw, quick=quick)
        if settings.min_samples > settings.count:
            raise ScenarioError(f"min_samples {settings.min_samples} exceeds count {settings.count}")
        return settings

    def quicken(self, settings: RttSettings) -> RttSettings:
        # Demos and tests: a third of the samples (never below what p99 needs), short stagger.
        count = max(settings.min_samples + 20, settings.count // 3)
        return settings.model_copy(update={"count": count, "stagger": min(settings.stagger, 0.3)})

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: RttSettings, progress: Progress
    ) -> list[Measurement]:
        # Control-plane pairs first and on their own, so no other probing disturbs the pairs the
        # reference architecture bounds; then the rest (sampled by the plan: a bounded budget per node).
        measured: list[Measurement] = []
        first, rest = _phases(keys, fleet.nodes)
        for phase, phase_keys in (("control-plane pairs", first), ("other pairs", rest)):
            if phase_keys:
                # the trust floor travels with the raw result, so run.json says what was required
                # results that stay small: past raw_limit these pairs keep histograms, made as
                # each agent answers (control-plane pairs: raw samples)
                compacting = phase_keys is rest and len(rest) * settings.count > settings.raw_limit
                measured += await run_peer_jobs(
                    JOB,
                    phase_keys,
                    fleet,
                    lambda peers: _as_job(settings, peers),
                    progress,
                    note=f"{phase}: {len(phase_keys)} directed, {settings.count} samples each",
                    extra={"min_samples": settings.min_samples},
                    keep=_compacted if compacting else None,
                )
        return measured

    def metrics(self) -> Sequence[Metric]:
        return RTT_METRICS

    def budget(self, settings: RttSettings) -> int | None:
        return settings.max_peers

    def cost(self, keys: frozenset[ResultKey], settings: RttSettings, nodes: Sequence[Node]) -> ProbeCost:
        """Two phases (control-plane pairs, then the others), each at most the agent's time
        limit; per node, in its busier phase: the streams it sends and echoes, each one packet
        per ``interval``."""
        phases = [ks for ks in _phases(keys, nodes) if ks]
        streams: dict[str, int] = {}
        for phase in phases:
            counted: dict[str, int] = {}
            for key in phase:
                for node in (key.node, key.peer or key.node):
                    counted[node] = counted.get(node, 0) + 1
            for node, n in counted.items():
                streams[node] = max(streams.get(node, 0), n)
        return ProbeCost(
            self.name,
            duration_s=len(phases) * deadline(settings),
            streams=streams,
            packets_per_s={node: n / settings.interval for node, n in streams.items()},
            note=f"{len(phases)} phase(s), {settings.count} samples per direction",
        )


def _compacted(measurement: Measurement) -> Measurement:
    return replace(measurement, data=compact(measurement.data))


def _phases(keys: frozenset[ResultKey], nodes: Sequence[Node]) -> tuple[frozenset[ResultKey], frozenset[ResultKey]]:
    """(control-plane pairs, the others): measured one after the other."""
    control = {n.name for n in nodes if n.is_control_plane}
    first = frozenset(k for k in keys if k.node in control and k.peer in control)
    return first, keys - first


DRIVER = RttDriver()
