"""RTT metrics: both directions of a pair pooled, from raw samples, or from mergeable histograms
where the driver compacted them (pairs beyond the control planes', past ``raw_limit`` samples:
``compact``).  Percentiles come from the pooled raw samples or the merged histogram (within
bench/histogram.py's stated resolution), never from averaged percentiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.bench.histogram import RESOLUTION, Histogram
from talbench.bench.metric import Metric
from talbench.bench.model import Measurement, Node, Observation, Subject, SubjectKind
from talbench.bench.stats import Summary, jitter
from talbench.bench.units import Dimension

# What makes a direction's figures untrustworthy, where its stamps are not all the kernel's (an
# old kernel, a socket that refused SO_TIMESTAMPING): then a timestamp is a clock read by a
# process that may wait for a CPU, and a busy or stalled agent's wait is counted as network.
# With kernel stamps at T1, T2 and T4 (agents/probes/rtt/stream.py) neither end's scheduling moves
# the figure (the reflector's wait is its dwell, taken out), and these rules do not apply.
SATURATED_CPU_PERCENT = 90.0  # agent process busy >= 90 % of one core: its timestamps are suspect
# The agent's event loop was stalled (woke its sampler >= 5 ms late) in more than this share of
# its wake-ups: that share of RTT samples carries scheduling delay rather than network delay,
# enough to move a p99 (a stall is added to every sample it holds, and dwarfs a LAN path's round
# trip).  Such figures are not judged.  A single stall touches a sample or two
# and is left alone.
STALLED_SHARE = 0.01
MIN_LATE_TICKS = 3  # fewer late wake-ups than this say nothing about a share (short jobs have ~30)
RAW_FIELDS = ("samples_ns", "dwell_ns", "t1_ns", "t2_ns", "t1_base_ns", "t2_base_ns")


def compact(data: Mapping[str, Any]) -> dict[str, Any]:
    """One direction's raw result with its per-sample lists replaced by histograms (RTT and
    dwell, as Histogram records: run.json writes their JSON form) and its jitter, computed from
    the raw samples first; counts and stamps stay."""
    samples = [int(ns) for ns in data.get("samples_ns") or ()]
    out = {key: value for key, value in data.items() if key not in RAW_FIELDS}
    out["histogram_ns"] = Histogram.of(samples)
    out["dwell_histogram_ns"] = Histogram.of(int(ns) for ns in data.get("dwell_ns") or ())
    out["jitter_ns"] = jitter([float(ns) for ns in samples])
    return out


def _rtt_histogram(data: Mapping[str, Any], field: str = "histogram_ns", raw: str = "samples_ns") -> Histogram:
    """The direction's histogram: the compacted one (a Histogram, or its JSON form), or its
    raw samples counted."""
    stored = data.get(field)
    if isinstance(stored, Histogram):
        return stored
    if stored is not None:
        return Histogram.from_json(stored)
    return Histogram.of(int(ns) for ns in data.get(raw) or ())


def sample_count(data: Mapping[str, Any]) -> int:
    if "histogram_ns" in data:
        return _rtt_histogram(data).count
    return len(data.get("samples_ns") or ())


def kernel_stamped(data: Mapping[str, Any]) -> bool:
    """Every sample of this direction has kernel stamps at T1, T2 and T4 and a reflector's T3."""
    stamps, n = data.get("stamps"), sample_count(data)
    if not isinstance(stamps, Mapping):
        return False
    return all(stamps.get(k) == n for k in ("t1_kernel", "t2_kernel", "t4_kernel", "reflected"))


def _untrusted(m: Measurement) -> str | None:
    if kernel_stamped(m.data):
        return None
    # the agent's peak over 0.5 s windows: a saturated burst is not averaged away
    cpu = m.resources.get("cpu_process_percent_max", m.resources.get("cpu_process_percent"))
    if isinstance(cpu, (int, float)) and cpu >= SATURATED_CPU_PERCENT:
        return f"agent on {m.key.node} was saturated ({cpu:.0f} % of a core), its timestamps not the kernel's"
    stalled = _stalled(m.resources)
    if stalled is not None:
        return f"agent on {m.key.node} {stalled}: its timestamps (not the kernel's) include scheduling delay"
    return None


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


def _counts(measurements: Sequence[Measurement]) -> tuple[int, int]:
    return (
        sum(int(m.data.get("sent", 0)) for m in measurements),
        sum(int(m.data.get("received", 0)) for m in measurements),
    )


def _figure(measurements: Sequence[Measurement], field: str) -> tuple[float, int, str]:
    """(value in seconds, samples, how it was read) of p50/p90/p99/maximum/jitter."""
    if field == "jitter":
        values = [
            float(m.data["jitter_ns"]) / 1e9
            if "jitter_ns" in m.data
            else jitter([ns / 1e9 for ns in m.data.get("samples_ns") or ()])
            for m in measurements
        ]
        return max(values), sum(sample_count(m.data) for m in measurements), ""
    if not any("histogram_ns" in m.data for m in measurements):
        samples = [ns / 1e9 for m in measurements for ns in m.data.get("samples_ns") or ()]
        return getattr(Summary.of(samples), field), len(samples), ""
    merged = Histogram()
    for m in measurements:
        merged = merged.merge(_rtt_histogram(m.data))
    if field == "maximum":
        return float(merged.maximum or 0) / 1e9, merged.count, ""
    q = {"p50": 50.0, "p90": 90.0, "p99": 99.0}[field]
    return merged.percentile(q) / 1e9, merged.count, f", from histograms (+/- {RESOLUTION * 100:.1f} %)"


def _dwell_note(measurements: Sequence[Measurement]) -> str:
    """The reflectors' worst p99 dwell, when it was large enough to have mattered (>= 1 ms)."""
    worst = 0.0
    for m in measurements:
        dwell = _rtt_histogram(m.data, "dwell_histogram_ns", "dwell_ns")
        if dwell.count:
            worst = max(worst, dwell.percentile(99) / 1e9)
    return f", reflector dwell p99 {worst * 1e3:.3g} ms taken out" if worst >= 1e-3 else ""


def _observe_dwell(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    merged = Histogram()
    for m in measurements:
        merged = merged.merge(_rtt_histogram(m.data, "dwell_histogram_ns", "dwell_ns"))
    if not merged.count:
        return Observation(None, 0, invalid="no reflector stamps (no replies, or a reflector that does not stamp)")
    return Observation(merged.percentile(99) / 1e9, merged.count, detail="time the peers' agents held a probe")


def _latency_metric(name: str, field: str, description: str) -> Metric:
    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        sent, received = _counts(measurements)
        n = sum(sample_count(m.data) for m in measurements)
        loss = 1 - received / sent if sent else 1.0
        detail = f"n={received}/{sent}, loss {loss * 100:.2g} %" + _dwell_note(measurements)
        untrusted = next((why for m in measurements if (why := _untrusted(m)) is not None), None)
        if untrusted:
            return Observation(None, received, invalid=untrusted, detail=detail)
        if sent and not n:
            return Observation(math.inf, 0, detail=f"no replies ({detail})")
        floor = sum(int(m.data.get("min_samples", 0)) for m in measurements)
        if n < floor:
            return Observation(None, n, invalid=f"too few samples ({n} < {floor})", detail=detail)
        value, count, how = _figure(measurements, field)
        return Observation(value, count, detail=detail + how)

    return Metric(name, "rtt", SubjectKind.PAIR, Dimension.DURATION, True, observe, description)


def _observe_loss(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    sent, received = _counts(measurements)
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
