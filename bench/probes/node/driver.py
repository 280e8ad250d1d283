"""node probe, coordinator side: the node's size judged against the reference architecture's
control-plane sizing, and its CPU and memory utilisation over time.

Sizing depends on the cluster: the reference architecture asks control planes for 4 cores, 8 GB
of memory and 40 GB of disk below 100 workers, 8 cores and 32 GB from 100 workers.  The judge
compares one value with fixed limits, so each sizing metric is observed / required (``1.0`` =
exactly what is asked; a check fails below ``100 %``) and the detail names the figures.

Utilisation comes from cumulative counters sampled every second, so the CPU figure is the mean
over the whole span (short bursts are normal; sustained load is what the 60 % rule is about) and
the memory figure is the peak (memory is a level: a peak above 60 % is headroom lost).  CPU and
memory used by talbench itself (the agent and what it started: fio, etcd, iperf3) are
subtracted, so the figure is the node's own load.

Spanning the run: ``NodeDriver.run`` samples a window of ``duration`` on every node; an executor
that wants the whole run sampled uses ``NodeDriver.spanning`` around the other probes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from talbench.agents.params import Params, validate, wire
from talbench.agents.probes.node import probe as node_agent
from talbench.agents.probes.node.probe import NodeParams, NodeSettings
from talbench.bench.agent_client import JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Role, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.units import Dimension, format_value

# Reference architecture, "Best Practices for Provisioning Control Plane Nodes" (seed 000/001):
# ">= 4 cores, 8 GB, 40 GB below 100 workers; >= 8 cores, 32 GB, 40 GB from 100 workers".
LARGE_CLUSTER_WORKERS = 100
SMALL_CLUSTER = {"cores": 4, "memory_bytes": 8e9, "disk_bytes": 40e9}
LARGE_CLUSTER = {"cores": 8, "memory_bytes": 32e9, "disk_bytes": 40e9}

COORDINATOR_SLACK = 15.0
MIN_INTERVALS = 2  # utilisation needs at least this many sampling intervals
QUICK_DURATION = 3.0
QUICK_INTERVAL = 0.5

Mode = Literal["window", "start", "collect"]


def job_params(settings: NodeSettings, mode: Mode) -> dict[str, Any]:
    """What each agent is sent: the settings and the part of the sampling the job is."""
    return {**wire(settings), "mode": mode}


def deadline(settings: NodeSettings, mode: Mode) -> float:
    """How long the coordinator waits for one agent's job: the agent's own limit plus slack."""
    return node_agent.time_limit(validate(NodeParams, job_params(settings, mode))) + COORDINATOR_SLACK


@dataclass
class Span:
    """What ``NodeDriver.spanning`` yields: filled with one Measurement per key on exit."""

    measurements: list[Measurement] = field(default_factory=list)


class NodeDriver(DeclaredDriver[NodeSettings]):
    name = "node"
    declaration = node_agent.PROBE
    settings_model = NodeSettings

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> NodeSettings:
        settings: NodeSettings = super().settings(raw, quick=quick)
        if settings.interval * MIN_INTERVALS > settings.duration:
            raise ScenarioError(
                f"duration {settings.duration:g}s holds fewer than {MIN_INTERVALS} intervals of {settings.interval:g}s"
            )
        return settings

    def quicken(self, settings: NodeSettings) -> NodeSettings:
        # Demos and tests: a short window, sampled more often.
        return settings.model_copy(
            update={
                "duration": min(settings.duration, QUICK_DURATION),
                "interval": min(settings.interval, QUICK_INTERVAL),
            }
        )

    def cost(self, keys: frozenset[ResultKey], settings: NodeSettings, nodes: Sequence[Node]) -> ProbeCost:
        """Alone: a ``duration`` window on every node at once.  Beside other probes it samples
        through them instead and adds only its collection."""
        return ProbeCost(
            self.name,
            duration_s=settings.duration + settings.interval,
            note=f"reads /proc every {settings.interval:g} s (alone: a {settings.duration:g} s window; "
            "beside other probes: through them, adding only the collection)",
        )

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: NodeSettings, progress: Progress
    ) -> list[Measurement]:
        """Facts and a ``duration`` window of samples from every node at once."""
        nodes = _nodes(keys)
        progress.update("node", done=0, total=len(nodes), note=f"sizing and {settings.duration:g}s of utilisation")

        async def one(node: str) -> Measurement:
            outcome = await fleet.agents[node].run_job(
                "node", job_params(settings, "window"), fleet.run_id, deadline=deadline(settings, "window")
            )
            return _measurement(node, outcome)

        measured = list(await asyncio.gather(*(one(node) for node in nodes)))
        progress.update("node", done=len(nodes), total=len(nodes), note="done")
        return measured

    def spanning(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: Params, progress: Progress
    ) -> contextlib.AbstractAsyncContextManager[Span]:
        """Sample on every node while the body runs (the other probes), then collect:

        async with node_driver.spanning(keys, fleet, settings, progress) as span:
            ...  # run the other probes
        measurements += span.measurements
        """
        return self._spanning(keys, fleet, self.typed(settings), progress)

    @contextlib.asynccontextmanager
    async def _spanning(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: NodeSettings, progress: Progress
    ) -> AsyncIterator[Span]:
        nodes = _nodes(keys)
        span = Span()
        progress.update("node", done=0, total=len(nodes), note="sampling utilisation through the run")
        outcomes = await asyncio.gather(
            *(
                fleet.agents[node].run_job(
                    "node", job_params(settings, "start"), fleet.run_id, deadline=deadline(settings, "start")
                )
                for node in nodes
            )
        )
        started = [node for node, outcome in zip(nodes, outcomes, strict=True) if outcome.ok]
        span.measurements.extend(
            _measurement(node, outcome) for node, outcome in zip(nodes, outcomes, strict=True) if not outcome.ok
        )
        try:
            yield span
        finally:
            collect = job_params(settings, "collect")
            collected = await asyncio.gather(
                *(
                    fleet.agents[node].run_job("node", collect, fleet.run_id, deadline=deadline(settings, "collect"))
                    for node in started
                )
            )
            span.measurements.extend(
                _measurement(node, outcome) for node, outcome in zip(started, collected, strict=True)
            )
            progress.update("node", done=len(nodes), total=len(nodes), note="done")

    def metrics(self) -> Sequence[Metric]:
        return NODE_METRICS


def _nodes(keys: frozenset[ResultKey]) -> list[str]:
    return sorted({key.node for key in keys if key.probe == "node"})


def _measurement(node: str, outcome: JobOutcome) -> Measurement:
    return outcome.measurement(ResultKey("node", node))


# ---- sizing --------------------------------------------------------------------------------


def workers(nodes: Sequence[Node]) -> int:
    return sum(1 for node in nodes if node.role is not Role.CONTROL_PLANE)


def requirement(nodes: Sequence[Node]) -> tuple[Mapping[str, float], str]:
    count = workers(nodes)
    if count >= LARGE_CLUSTER_WORKERS:
        return LARGE_CLUSTER, f"{count} workers >= {LARGE_CLUSTER_WORKERS}"
    return SMALL_CLUSTER, f"{count} worker{'s' if count != 1 else ''} < {LARGE_CLUSTER_WORKERS}"


def _facts(measurements: Sequence[Measurement]) -> Mapping[str, Any]:
    return measurements[0].data.get("facts") or {}


def _sizing_metric(name: str, field_: str, description: str) -> Metric:
    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        facts = _facts(measurements)
        required, why = requirement(nodes)
        if field_ == "cores":
            have = facts.get("cpus")
            shown = f"{have} cores" if have is not None else "cores unknown"
            needed = f"{required['cores']:g} cores"
        elif field_ == "memory_bytes":
            have = facts.get("memory_bytes")
            shown = f"{format_value(have, Dimension.BYTES)} memory" if have is not None else "memory unknown"
            needed = f"{required['memory_bytes'] / 1e9:g} GB"
        else:
            etcd_fs = facts.get("etcd_filesystem") or {}
            have = etcd_fs.get("size_bytes")
            where = etcd_fs.get("path", "?")
            shown = (
                f"{format_value(have, Dimension.BYTES)} filesystem at {where}"
                if have is not None
                else "disk size unknown"
            )
            needed = f"{required['disk_bytes'] / 1e9:g} GB"
        detail = f"{shown}, needs {needed} ({why})"
        if not isinstance(have, (int, float)) or have <= 0:
            return Observation(None, 0, invalid=f"the agent reported no {field_.replace('_', ' ')}", detail=detail)
        return Observation(float(have) / required[field_], 1, detail=detail)

    return Metric(name, "node", SubjectKind.NODE, Dimension.RATIO, False, observe, description, timed=False)


def _observe_cores(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    facts = _facts(measurements)
    cpus = facts.get("cpus")
    detail = str(facts.get("cpu_model") or "")
    return Observation(float(cpus) if isinstance(cpus, (int, float)) else None, 1, detail=detail)


def _observe_memory(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    memory = _facts(measurements).get("memory_bytes")
    return Observation(float(memory) if isinstance(memory, (int, float)) else None, 1)


# ---- utilisation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Utilisation:
    intervals: int
    seconds: float
    cpu_mean: float  # node's own load (talbench excluded), share of all CPUs
    cpu_own_mean: float  # talbench's share, excluded above
    cpu_peak: float  # busiest single interval (talbench excluded)
    memory_peak: float  # share of memory in use (talbench excluded), highest sample
    memory_mean: float


def utilisation(sampling: Mapping[str, Any]) -> Utilisation | None:
    """From the agent's counter columns; None when fewer than two samples."""
    columns = sampling.get("columns") or {}
    t = columns.get("t") or []
    busy = columns.get("cpu_busy_s") or []
    total = columns.get("cpu_total_s") or []
    own = columns.get("own_cpu_s") or []
    used = columns.get("mem_used_bytes") or []
    rss = columns.get("own_rss_bytes") or []
    memory_total = sampling.get("memory_total_bytes")
    n = min(len(t), len(busy), len(total), len(own), len(used), len(rss))
    if n < 2:
        return None
    whole_total = total[n - 1] - total[0]
    if whole_total <= 0:
        return None
    whole_busy = busy[n - 1] - busy[0]
    whole_own = min(max(own[n - 1] - own[0], 0.0), whole_busy)
    peak = 0.0
    for i in range(1, n):
        d_total = total[i] - total[i - 1]
        if d_total <= 0:
            continue
        d_busy = busy[i] - busy[i - 1]
        d_own = min(max(own[i] - own[i - 1], 0.0), d_busy)
        peak = max(peak, (d_busy - d_own) / d_total)
    memory = [max(used[i] - rss[i], 0.0) / memory_total for i in range(n)] if memory_total else [0.0]
    return Utilisation(
        intervals=n - 1,
        seconds=t[n - 1] - t[0],
        cpu_mean=(whole_busy - whole_own) / whole_total,
        cpu_own_mean=whole_own / whole_total,
        cpu_peak=peak,
        memory_peak=max(memory),
        memory_mean=sum(memory) / len(memory),
    )


def _sampling(measurement: Measurement) -> dict[str, Any]:
    """The sampling block with the node's memory size beside it."""
    sampling = dict(measurement.data.get("sampling") or {})
    sampling["memory_total_bytes"] = (measurement.data.get("facts") or {}).get("memory_bytes")
    return sampling


def _observe_cpu_utilisation(
    subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]
) -> Observation:
    found = utilisation(_sampling(measurements[0]))
    if found is None or found.intervals < MIN_INTERVALS:
        return Observation(None, found.intervals if found else 0, invalid="too few utilisation samples")
    detail = (
        f"mean over {found.seconds:.0f}s ({found.intervals + 1} samples), talbench's own "
        f"{found.cpu_own_mean * 100:.0f} % excluded; busiest interval {found.cpu_peak * 100:.0f} %"
    )
    return Observation(found.cpu_mean, found.intervals, detail=detail)


def _observe_memory_utilisation(
    subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]
) -> Observation:
    found = utilisation(_sampling(measurements[0]))
    if found is None or found.intervals < MIN_INTERVALS:
        return Observation(None, found.intervals if found else 0, invalid="too few utilisation samples")
    if not _facts(measurements).get("memory_bytes"):
        return Observation(None, 0, invalid="the agent reported no memory size")
    detail = f"peak over {found.seconds:.0f}s ({found.intervals + 1} samples), mean {found.memory_mean * 100:.0f} %, talbench's own memory excluded"
    return Observation(found.memory_peak, found.intervals + 1, detail=detail)


NODE_METRICS: tuple[Metric, ...] = (
    _sizing_metric(
        "node.cpu_cores_ratio", "cores", "logical CPUs / what the reference architecture asks for this cluster size"
    ),
    _sizing_metric(
        "node.memory_ratio", "memory_bytes", "memory / what the reference architecture asks for this cluster size"
    ),
    _sizing_metric(
        "node.disk_ratio", "disk_bytes", "size of etcd's filesystem / the 40 GB the reference architecture asks for"
    ),
    Metric(
        "node.cpu_cores", "node", SubjectKind.NODE, Dimension.COUNT, False, _observe_cores, "logical CPUs", timed=False
    ),
    Metric(
        "node.memory", "node", SubjectKind.NODE, Dimension.BYTES, False, _observe_memory, "memory size", timed=False
    ),
    Metric(
        "node.cpu_utilisation",
        "node",
        SubjectKind.NODE,
        Dimension.RATIO,
        True,
        _observe_cpu_utilisation,
        "CPU busy share over the sampled span, talbench's own load excluded",
    ),
    Metric(
        "node.memory_utilisation",
        "node",
        SubjectKind.NODE,
        Dimension.RATIO,
        True,
        _observe_memory_utilisation,
        "peak memory in use (total - available) over the sampled span, talbench's own excluded",
    ),
)


DRIVER = NodeDriver()
