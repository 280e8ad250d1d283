"""Execution: run the planned probes through a fleet, one probe after the other (probes on the
same nodes would disturb each other), and return one Measurement for every planned key."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from talbench.agents.params import Params
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import CouldNotRun
from talbench.bench.metric import Progress
from talbench.bench.model import CLUSTER_NODE, Measurement, ResultKey
from talbench.bench.plan import Plan
from talbench.bench.probes.base import ProbeDriver, Span, Spanning


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
    drivers: Mapping[str, ProbeDriver[Params]],
    settings: Mapping[str, Params],
    progress: Progress,
) -> Execution:
    """Measure every key of ``plan``.  A key whose agent is not ready, whose driver failed, or
    that the driver did not return, comes back as a failed Measurement with the reason."""
    results: dict[ResultKey, Measurement] = {}
    timings: list[ProbeTiming] = []
    runnable: dict[str, frozenset[ResultKey]] = {}
    for probe in plan.probes:
        keys = plan.keys_of(probe)
        runnable[probe] = frozenset(k for k in keys if _owner_ready(k, fleet))
        for key in keys - runnable[probe]:
            results[key] = Measurement(
                key, False, error=f"agent not ready: {fleet.unready.get(key.node, 'not deployed')}"
            )
    # A driver that can span (node utilisation) samples through all the other probes, so that
    # "utilisation during the run" means the whole run; alone, it runs its own window.
    spanning: dict[str, Spanning] = {
        p: d for p in plan.probes if isinstance(d := drivers[p], Spanning) and runnable[p] and len(plan.probes) > 1
    }
    sequential = [p for p in plan.probes if p not in spanning]
    async with contextlib.AsyncExitStack() as stack:
        spans: dict[str, tuple[float, Span]] = {}
        for probe, driver in spanning.items():
            spans[probe] = (
                time.time(),
                await stack.enter_async_context(driver.spanning(runnable[probe], fleet, settings[probe], progress)),
            )
        for probe in sequential:
            started = time.time()
            if runnable[probe]:
                measured = await _guarded(
                    probe, drivers[probe].run(runnable[probe], fleet, settings[probe], progress), runnable[probe]
                )
                _collect(results, runnable[probe], measured)
            timings.append(ProbeTiming(probe, started, time.time()))
            progress.update(probe, note="done")
    for probe, (started, span) in spans.items():
        _collect(results, runnable[probe], span.measurements)
        timings.append(ProbeTiming(probe, started, time.time()))
    return Execution(results, tuple(timings))


async def _guarded(
    probe: str, measuring: Awaitable[list[Measurement]], keys: frozenset[ResultKey]
) -> list[Measurement]:
    try:
        return await measuring
    except CouldNotRun:
        raise
    except Exception as exc:  # a driver bug must not cost the other probes' results
        reason = f"{probe} driver failed: {type(exc).__name__}: {exc}".splitlines()[0]
        return [Measurement(key, False, error=reason) for key in keys]


def _collect(results: dict[ResultKey, Measurement], keys: frozenset[ResultKey], measured: list[Measurement]) -> None:
    for measurement in measured:
        if measurement.key in keys:
            results[measurement.key] = measurement
    for key in keys:
        results.setdefault(key, Measurement(key, False, error="no result returned"))


def _owner_ready(key: ResultKey, fleet: Fleet) -> bool:
    """Cluster-scoped keys (CLUSTER_NODE) belong to no single agent."""
    return key.node not in fleet.unready and (key.node in fleet.agents or key.node == CLUSTER_NODE)
