"""RTT probe, coordinator side: every agent measures to every peer it owes (UDP echo), and
the metrics pool both directions' raw samples per unordered pair."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.agents.params import wire
from talbench.agents.probes import rtt as rtt_agent
from talbench.agents.probes.rtt import RttSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.peer_jobs import run_peer_jobs
from talbench.bench.stats import Summary, jitter
from talbench.bench.units import Dimension

# What makes a direction's figures untrustworthy, where its stamps are not all the kernel's (an
# old kernel, a socket that refused SO_TIMESTAMPING): then a timestamp is a clock read by a
# process that may wait for a CPU, and a busy or stalled agent's wait is counted as network.
# With kernel stamps at T1, T2 and T4 (agents/rtt_stream.py) neither end's scheduling moves
# the figure (the reflector's wait is its dwell, taken out), and these rules do not apply.
SATURATED_CPU_PERCENT = 90.0  # agent process busy >= 90 % of one core: its timestamps are suspect
# The agent's event loop was stalled (woke its sampler >= 5 ms late) in more than this share of
# its wake-ups: that share of RTT samples carries scheduling delay rather than network delay,
# enough to move a p99 (seen here on a host loaded by other work: 38 ms stalls turned a 0.1 ms
# path into a 53 ms p99).  Such figures are not judged.  A single stall touches a sample or two
# and is left alone.
STALLED_SHARE = 0.01
MIN_LATE_TICKS = 3  # fewer late wake-ups than this say nothing about a share (short jobs have ~30)


JOB = rtt_agent.PROBE.jobs[0]


def deadline(settings: RttSettings) -> float:
    """How long the coordinator waits for one agent's job, slack included."""
    return rtt_agent.time_limit(settings) + 10.0


def _as_job(settings: RttSettings, peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {**wire(settings), "peers": peers}


class RttDriver(DeclaredDriver):
    name = "rtt"
    declaration = rtt_agent.PROBE
    settings_model = RttSettings

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> RttSettings:
        settings: RttSettings = super().settings(raw, quick=quick)
        if settings.min_samples > settings.count:
            raise ScenarioError(f"min_samples {settings.min_samples} exceeds count {settings.count}")
        return settings

    def quicken(self, settings: RttSettings) -> RttSettings:
        # Demos and tests: a third of the samples (never below what p99 needs), short stagger.
        count = max(settings.min_samples + 20, settings.count // 3)
        return settings.model_copy(update={"count": count, "stagger": min(settings.stagger, 0.3)})

    async def run(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: RttSettings, progress: Progress
    ) -> list[Measurement]:
        # Control-plane pairs first and on their own, so no other probing disturbs the pairs the
        # reference architecture bounds; then the rest (sampled by the plan: a bounded budget per node).
        measured: list[Measurement] = []
        first, rest = _phases(keys, fleet.nodes)
        for phase, phase_keys in (("control-plane pairs", first), ("other pairs", rest)):
            if phase_keys:
                # the trust floor travels with the raw result, so run.json says what was required
                measured += await run_peer_jobs(
                    JOB,
                    phase_keys,
                    fleet,
                    lambda peers: _as_job(settings, peers),
                    progress,
                    note=f"{phase}: {len(phase_keys)} directed, {settings.count} samples each",
                    extra={"min_samples": settings.min_samples},
                )
        return measured

    def metrics(self) -> Sequence[Metric]:
        return RTT_METRICS

    def pair_budget(self, settings: RttSettings) -> int | None:
        return settings.max_peers

    def estimate(self, keys: frozenset[ResultKey], settings: RttSettings, nodes: Sequence[Node]) -> ProbeCost:
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


def kernel_stamped(data: Mapping[str, Any]) -> bool:
    """Every sample of this direction has kernel stamps at T1, T2 and T4 and a reflector's T3."""
    stamps, n = data.get("stamps"), len(data.get("samples_ns", ()))
    if not isinstance(stamps, Mapping):
        return False
    return all(stamps.get(k) == n for k in ("t1_kernel", "t2_kernel", "t4_kernel", "reflected"))


def _phases(keys: frozenset[ResultKey], nodes: Sequence[Node]) -> tuple[frozenset[ResultKey], frozenset[ResultKey]]:
    """(control-plane pairs, the others): measured one after the other."""
    control = {n.name for n in nodes if n.is_control_plane}
    first = frozenset(k for k in keys if k.node in control and k.peer in control)
    return first, keys - first


def _pooled(measurements: Sequence[Measurement]) -> tuple[list[float], int, int, str | None]:
    """All samples (seconds) of the given directions, packets sent, received, and a reason the
    figures cannot be trusted (a saturated or stalled agent whose clock reads are in them)."""
    samples: list[float] = []
    sent = received = 0
    for m in measurements:
        samples.extend(ns / 1e9 for ns in m.data.get("samples_ns", ()))
        sent += int(m.data.get("sent", 0))
        received += int(m.data.get("received", 0))
        if kernel_stamped(m.data):
            continue
        # the agent's peak over 0.5 s windows: a saturated burst is not averaged away
        cpu = m.resources.get("cpu_process_percent_max", m.resources.get("cpu_process_percent"))
        if isinstance(cpu, (int, float)) and cpu >= SATURATED_CPU_PERCENT:
            return (
                samples,
                sent,
                received,
                f"agent on {m.key.node} was saturated ({cpu:.0f} % of a core), its timestamps not the kernel's",
            )
        stalled = _stalled(m.resources)
        if stalled is not None:
            return (
                samples,
                sent,
                received,
                f"agent on {m.key.node} {stalled}: its timestamps (not the kernel's) include scheduling delay",
            )
    return samples, sent, received, None


def _stalled(resources: Mapping[str, Any]) -> str | None:
    ticks, late = resources.get("loop_ticks"), resources.get("loop_ticks_late")
    if (
        not isinstance(ticks, int)
        or not isinstance(late, int)
        or late < MIN_LATE_TICKS
        or late / ticks <= STALLED_SHARE
    ):
        return None
    host = resources.get("cpu_system_percent")
    busy = f", host CPU {host:.0f} %" if isinstance(host, (int, float)) else ""
    worst = resources.get("loop_lag_max_ms", 0)
    return (
        f"was stalled >= {resources.get('loop_late_ms', 5):g} ms in {late} of {ticks} wake-ups "
        f"(worst {worst:.0f} ms{busy})"
    )


def _dwell_note(measurements: Sequence[Measurement]) -> str:
    """The reflectors' worst p99 dwell, when it was large enough to have mattered (>= 1 ms)."""
    dwells = [Summary.of([ns / 1e9 for ns in m.data["dwell_ns"]]).p99 for m in measurements if m.data.get("dwell_ns")]
    worst = max(dwells, default=0.0)
    return f", reflector dwell p99 {worst * 1e3:.3g} ms taken out" if worst >= 1e-3 else ""


def _observe_dwell(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    dwells = [ns / 1e9 for m in measurements for ns in m.data.get("dwell_ns", ())]
    if not dwells:
        return Observation(None, 0, invalid="no reflector stamps (no replies, or a reflector that does not stamp)")
    return Observation(Summary.of(dwells).p99, len(dwells), detail="time the peers' agents held a probe")


def _min_samples(measurements: Sequence[Measurement]) -> int:
    return sum(int(m.data.get("min_samples", 0)) for m in measurements)


def _latency_metric(name: str, field: str, description: str) -> Metric:
    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        samples, sent, received, saturated = _pooled(measurements)
        loss = 1 - received / sent if sent else 1.0
        detail = f"n={received}/{sent}, loss {loss * 100:.2g} %" + _dwell_note(measurements)
        if saturated:
            return Observation(None, received, invalid=saturated, detail=detail)
        if sent and not samples:
            return Observation(math.inf, 0, detail=f"no replies ({detail})")
        floor = _min_samples(measurements)
        if len(samples) < floor:
            return Observation(None, len(samples), invalid=f"too few samples ({len(samples)} < {floor})", detail=detail)
        if field == "jitter":
            value = max(jitter([ns / 1e9 for ns in m.data.get("samples_ns", ())]) for m in measurements)
        else:
            value = getattr(Summary.of(samples), field)
        return Observation(value, len(samples), detail=detail)

    return Metric(name, "rtt", SubjectKind.PAIR, Dimension.DURATION, True, observe, description)


def _observe_loss(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    _samples, sent, received, _ = _pooled(measurements)
    if not sent:
        return Observation(None, 0, invalid="nothing was sent")
    return Observation(1 - received / sent, sent, detail=f"{sent - received} of {sent} lost")


RTT_METRICS: tuple[Metric, ...] = (
    _latency_metric("rtt.p50", "p50", "median round-trip time, both directions pooled"),
    _latency_metric("rtt.p90", "p90", "90th percentile round-trip time"),
    _latency_metric("rtt.p99", "p99", "99th percentile round-trip time, both directions pooled"),
    _latency_metric("rtt.max", "maximum", "slowest round trip"),
    _latency_metric("rtt.jitter", "jitter", "mean difference between consecutive RTTs (worse direction)"),
    Metric("rtt.loss", "rtt", SubjectKind.PAIR, Dimension.RATIO, True, _observe_loss, "share of probes without reply"),
    Metric(
        "rtt.dwell.p99",
        "rtt",
        SubjectKind.PAIR,
        Dimension.DURATION,
        True,
        _observe_dwell,
        "99th percentile of the reflectors' dwell (T3 - T2): their own delay, taken out of the RTT",
    ),
)


DRIVER = RttDriver()
