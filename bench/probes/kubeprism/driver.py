"""kubeprism probe, coordinator side: every agent checks KubePrism on its own node's loopback
(127.0.0.1:7445, agents/probes/kubeprism/probe.py); the metric is the share of attempts answered."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence

from talbench.agents.params import wire
from talbench.agents.probes.kubeprism import probe as kubeprism_agent
from talbench.agents.probes.kubeprism.probe import KubePrismSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.units import Dimension

PROBE = kubeprism_agent.PROBE.name


def deadline(settings: KubePrismSettings) -> float:
    """How long the coordinator waits for one agent's job, slack included."""
    return kubeprism_agent.time_limit(settings) + 10.0


def observe_answered(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = measurements[0].data
    attempts = list(data.get("attempts") or ())
    if not attempts:
        return Observation(None, invalid="no attempt made")
    answered = [a for a in attempts if a.get("http_status") is not None]
    where = f"{data.get('host', kubeprism_agent.HOST)}:{data.get('port', kubeprism_agent.DEFAULT_PORT)}"
    if answered:
        median_ms = statistics.median(a.get("elapsed_s", 0.0) for a in answered) * 1e3
        detail = f"{len(answered)}/{len(attempts)} attempts on {where} answered (HTTP {answered[-1]['http_status']}, median {median_ms:.1f} ms)"
    else:
        detail = f"0/{len(attempts)} attempts on {where} answered: {attempts[-1].get('error') or 'no answer'}"
    return Observation(len(answered) / len(attempts), samples=len(attempts), detail=detail)


class KubePrismDriver(DeclaredDriver[KubePrismSettings]):
    name = PROBE
    declaration = kubeprism_agent.PROBE
    settings_model = KubePrismSettings

    def quicken(self, settings: KubePrismSettings) -> KubePrismSettings:
        return settings.model_copy(
            update={"interval": min(settings.interval, 0.1), "timeout": min(settings.timeout, 1.0)}
        )

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: KubePrismSettings, progress: Progress
    ) -> list[Measurement]:
        nodes = sorted(key.node for key in keys if key.node in fleet.agents)
        done = 0
        progress.update(PROBE, done=0, total=len(nodes), note=f"{kubeprism_agent.HOST}:{settings.port} on every node")

        async def one(node: str) -> Measurement:
            nonlocal done
            outcome = await fleet.agents[node].run_job(PROBE, wire(settings), fleet.run_id, deadline=deadline(settings))
            done += 1
            progress.update(PROBE, done=done, total=len(nodes), note=f"{node} done")
            return outcome.measurement(ResultKey(PROBE, node))

        return list(await asyncio.gather(*(one(node) for node in nodes)))

    def cost(self, keys: frozenset[ResultKey], settings: KubePrismSettings, nodes: Sequence[Node]) -> ProbeCost:
        """Every node at once, each at most its job's own limit: a few connections to 127.0.0.1."""
        return ProbeCost(
            self.name,
            duration_s=kubeprism_agent.time_limit(settings),
            note=f"{settings.attempts} connection(s) per node to its local load balancer",
        )

    def metrics(self) -> Sequence[Metric]:
        return (
            Metric(
                "kubeprism.answered",
                PROBE,
                SubjectKind.NODE,
                Dimension.RATIO,
                False,
                observe_answered,
                "share of attempts KubePrism (127.0.0.1:7445) answered on the node",
                needs_kubernetes=True,
            ),
        )


DRIVER = KubePrismDriver()
