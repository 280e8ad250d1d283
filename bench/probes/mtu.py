"""Path MTU probe, coordinator side: every agent searches the path MTU to each peer it owes
(agents/probes/mtu.py); a pair's figure is the smaller of its two directions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from talbench.agents.params import wire
from talbench.agents.probes import mtu as mtu_agent
from talbench.agents.probes.mtu import MtuSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import Metric, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.units import Dimension

JOB = mtu_agent.PROBE.jobs[0]


class MtuDriver(DeclaredDriver):
    name = "mtu"
    declaration = mtu_agent.PROBE
    settings_model = MtuSettings

    async def run(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: MtuSettings, progress: Progress
    ) -> list[Measurement]:
        peers_of: dict[str, list[str]] = {}
        for key in keys:
            if key.peer is not None:
                peers_of.setdefault(key.node, []).append(key.peer)
        done = 0
        progress.update(self.name, done=0, total=len(peers_of), note=f"{len(keys)} directed pairs")

        async def one(node: str, peers: list[str]) -> list[Measurement]:
            nonlocal done
            spec = [{"name": p, "host": fleet.node(p).address, "port": fleet.agent_port} for p in sorted(peers)]
            params = {**wire(settings), "peers": spec}
            deadline = JOB.time_limit(JOB.parse(params)) + 10.0
            outcome = await fleet.agents[node].run_job(JOB.name, params, fleet.run_id, deadline=deadline)
            done += 1
            progress.update(self.name, done=done, total=len(peers_of), note=f"{node} done")
            found = (outcome.result.get("peers") or {}) if outcome.ok else {}
            results = []
            for peer in peers:
                key = ResultKey(self.name, node, peer)
                if peer in found:
                    results.append(
                        Measurement(
                            key,
                            True,
                            data=found[peer],
                            started=outcome.started,
                            ended=outcome.ended,
                            resources=outcome.resources,
                        )
                    )
                else:
                    error = outcome.error or f"agent {node} returned no result for {peer}"
                    results.append(
                        Measurement(
                            key,
                            False,
                            error=error,
                            error_kind=outcome.error_kind,
                            started=outcome.started,
                            ended=outcome.ended,
                        )
                    )
            return results

        gathered = await asyncio.gather(*(one(node, peers) for node, peers in sorted(peers_of.items())))
        return [m for group in gathered for m in group]

    def metrics(self) -> Sequence[Metric]:
        return MTU_METRICS


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
