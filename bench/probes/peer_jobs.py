"""The fan-out shared by the per-pair probes (rtt, mtu): each agent gets one job naming every
peer it owes, and each (node, peer) key gets a Measurement from that job's ``peers`` result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from talbench.agents import wire
from talbench.agents.probe import Probe
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import ProbeCost, Progress
from talbench.bench.model import Measurement, Node, ResultKey


async def run_peer_jobs(
    job: Probe[BaseModel],
    keys: frozenset[ResultKey],
    fleet: Fleet,
    params_for: Callable[[list[dict[str, Any]]], dict[str, Any]],
    progress: Progress,
    *,
    note: str = "",
    extra: Mapping[str, Any] | None = None,
    slack: float = 10.0,
    keep: Callable[[Measurement], Measurement] | None = None,
) -> list[Measurement]:
    """One ``job`` per agent that owes pair keys; ``params_for(peers)`` builds its body and the
    wait is the job's own time limit plus ``slack``.  ``extra`` is added to every peer's raw
    result (e.g. the trust floor the metrics apply).  ``keep`` turns each measurement into what
    is kept of it as soon as its job answers (a summary instead of raw samples), so that the
    coordinator never holds every agent's raw result at once."""
    probe = next(iter(keys)).probe if keys else job.name
    peers_of: dict[str, list[str]] = {}
    for key in keys:
        if key.peer is not None:
            peers_of.setdefault(key.node, []).append(key.peer)
    done = 0
    progress.update(probe, done=0, total=len(peers_of), note=note or f"{len(keys)} directed pairs")

    async def one(node: str, peers: list[str]) -> list[Measurement]:
        nonlocal done
        spec = [{"name": p, "host": fleet.node(p).address, "port": fleet.agent_port} for p in sorted(peers)]
        params = params_for(spec)
        deadline = job.time_limit(job.parse(params)) + slack
        outcome = await fleet.agents[node].run_job(job.name, params, fleet.run_id, deadline=deadline)
        done += 1
        progress.update(probe, done=done, total=len(peers_of), note=f"{node} done")
        found = (outcome.result.get("peers") or {}) if outcome.ok else {}
        results = []
        for peer in peers:
            key = ResultKey(probe, node, peer)
            if peer in found:
                measurement = outcome.measurement(key, {**found[peer], **(extra or {})})
                results.append(keep(measurement) if keep is not None and measurement.ok else measurement)
            else:
                results.append(
                    outcome.measurement(key, error=outcome.error or f"agent {node} returned no result for {peer}")
                )
        return results

    gathered = await asyncio.gather(*(one(node, peers) for node, peers in sorted(peers_of.items())))
    return [m for group in gathered for m in group]


def estimate_peer_jobs(
    job: Probe[BaseModel],
    keys: frozenset[ResultKey],
    nodes: Sequence[Node],
    params_for: Callable[[list[dict[str, Any]]], dict[str, Any]],
    *,
    port: int = wire.DEFAULT_PORT,
    note: str = "",
) -> ProbeCost:
    """What ``run_peer_jobs`` will cost: every agent's job at once, so the longest job's own time
    limit; per node the peers it searches plus the peers that search it."""
    addresses = {node.name: node.address for node in nodes}
    peers_of: dict[str, list[str]] = {}
    load: dict[str, int] = {}
    for key in keys:
        if key.peer is not None:
            peers_of.setdefault(key.node, []).append(key.peer)
            for node in (key.node, key.peer):
                load[node] = load.get(node, 0) + 1
    longest = 0.0
    for peers in peers_of.values():
        spec = [{"name": p, "host": addresses.get(p, "192.0.2.1"), "port": port} for p in sorted(peers)]
        longest = max(longest, job.time_limit(job.parse(params_for(spec))))
    return ProbeCost(
        next(iter(keys)).probe if keys else job.name,
        duration_s=longest if peers_of else 0.0,
        streams=load,
        note=note or f"{len(keys)} directed pairs, every agent at once",
    )
