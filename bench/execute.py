"""Execution: run the planned probes through a fleet, one probe after the other (probes on the
same nodes would disturb each other), and return one Measurement for every planned key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import CouldNotRun
from talbench.bench.model import Measurement, ResultKey
from talbench.bench.plan import Plan
from talbench.bench.probes.base import ProbeDriver, Progress


@dataclass(frozen=True)
class ProbeTiming:
    probe: str
    started: float
    ended: float


@dataclass(frozen=True)
class Execution:
    results: Mapping[ResultKey, Measurement]
    timings: tuple[ProbeTiming, ...]


async def execute(
    plan: Plan,
    fleet: Fleet,
    drivers: Mapping[str, ProbeDriver],
    settings: Mapping[str, Any],
    progress: Progress,
) -> Execution:
    """Measure every key of ``plan``.  A key whose agent is not ready, whose driver failed, or
    that the driver did not return, comes back as a failed Measurement with the reason."""
    results: dict[ResultKey, Measurement] = {}
    timings: list[ProbeTiming] = []
    for probe in plan.probes:
        keys = plan.keys_of(probe)
        runnable = frozenset(k for k in keys if _owner_ready(k, fleet))
        for key in keys - runnable:
            results[key] = Measurement(key, False, error=f"agent not ready: {fleet.unready.get(key.node, 'not deployed')}")
        started = time.time()
        if runnable:
            driver = drivers[probe]
            try:
                measured = await driver.run(runnable, fleet, settings[probe], progress)
            except CouldNotRun:
                raise
            except Exception as exc:  # a driver bug must not cost the other probes' results
                reason = f"{probe} driver failed: {type(exc).__name__}: {exc}".splitlines()[0]
                measured = [Measurement(key, False, error=reason) for key in runnable]
            for measurement in measured:
                if measurement.key in runnable:
                    results[measurement.key] = measurement
            for key in runnable:
                results.setdefault(key, Measurement(key, False, error="no result returned"))
        timings.append(ProbeTiming(probe, started, time.time()))
        progress.update(probe, note="done")
    return Execution(results, tuple(timings))


def _owner_ready(key: ResultKey, fleet: Fleet) -> bool:
    """Cluster-scoped keys (node "cluster") belong to no single agent."""
    return key.node not in fleet.unready and (key.node in fleet.agents or key.node == "cluster")
