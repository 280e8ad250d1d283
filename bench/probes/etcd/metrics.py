"""etcd metrics: pure functions from the scratch cluster's raw results to observations.

The criteria are those of ``etcdctl check perf``: achieved rate >= 90 % of the profile's,
slowest request < 500 ms, latency standard deviation < 100 ms, no errors.  Latency is measured
from each write's scheduled send time (open loop: a slow etcd cannot hide behind a slower
generator); the service time (from the actual send) is reported alongside.  A load generator
that could not keep up makes the load figures invalid, not failed.

Member disk figures come from etcd's own Prometheus histograms (WAL fsync, backend commit: the delta
over the load; the p99 read as Prometheus' histogram_quantile() reads it, linear inside its bucket,
so its accuracy is the bucket width: etcd's disk buckets double, 1, 2, 4, 8, 16 ms ...).  The member round-trip time is
measured by talbench: every member's node sends HTTP round trips to the other members' peer
listeners (/raft/probing, what etcd's prober uses) before the load; the mean per direction, the
worst direction judged.  etcd's own etcd_network_peer_round_trip_time_seconds is not used: it is
a smoothed RTT starting from zero that under-reads on a freshly started cluster.  The recommended
heartbeat follows the etcd tuning guide: etcd's defaults (100 ms / 1000 ms) unless the maximum of
the average RTT between members calls for more (heartbeat around it, election timeout 10x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from talbench.agents.probes.etcd import probe as etcd_agent
from talbench.agents.probes.etcd import promtext
from talbench.agents.probes.etcd.histogram import LatencyHistogram
from talbench.bench.metric import Metric
from talbench.bench.model import Measurement, Node, Observation, Subject, SubjectKind
from talbench.bench.units import Dimension, format_value

NAME = etcd_agent.PROBE.name
ETCD_DEFAULT_HEARTBEAT = 0.1
ETCD_DEFAULT_ELECTION = 1.0


def _ms(value: float | None) -> str:
    return format_value(value, Dimension.DURATION)


def _load(m: Measurement) -> Mapping[str, Any]:
    return (m.data.get("result") or {}).get("load") or {}


def _settings(m: Measurement) -> Mapping[str, Any]:
    return m.data.get("settings") or {}


def _histogram(load: Mapping[str, Any], name: str) -> LatencyHistogram:
    raw = load.get(name)
    return LatencyHistogram.from_wire(raw) if raw else LatencyHistogram()


def _error_count(load: Mapping[str, Any]) -> int:
    return int(sum((load.get("requests") or {}).get("errors", {}).values()))


def _untrusted(m: Measurement) -> str | None:
    load = _load(m)
    if not load:
        return "the result holds no load figures"
    if load.get("saturated"):
        return f"load generator saturated: {load['saturated']}"
    return None


def _too_few(m: Measurement, histogram: LatencyHistogram) -> str | None:
    floor = int(_settings(m).get("min_requests", 1))
    if histogram.count < floor:
        return f"only {histogram.count} writes completed (at least {floor} needed for a latency figure)"
    return None


def _load_detail(m: Measurement) -> str:
    load, settings = _load(m), _settings(m)
    requests = load.get("requests") or {}
    cpu = load.get("cpu") or {}
    busiest = max(cpu.get("per_worker") or [0.0])
    what = (
        f"profile {settings.get('profile')}, {settings.get('rate', 0):g} writes/s"
        if load.get("mode") == "open"
        else "closed-loop ceiling"
    )
    return (
        f"{what}, {load.get('clients')} clients, {load.get('duration', 0):g}s; achieved {load.get('achieved_rate', 0):.1f} writes/s; "
        f"ok {requests.get('ok', 0)}, errors {_error_count(load)}, unsent {requests.get('unsent', 0)}; "
        f"generator {load.get('workers')} process(es), busiest {busiest * 100:.0f} % of a core"
    )


def _latency_detail(load: Mapping[str, Any]) -> str:
    latency, service, late = _histogram(load, "latency"), _histogram(load, "service"), _histogram(load, "late")
    text = (
        f"p50 {_ms(latency.percentile(50))}, p99 {_ms(latency.percentile(99))}, max {_ms(latency.max())}, "
        f"stddev {_ms(latency.stddev())} (n={latency.count}); service time p99 {_ms(service.percentile(99))}, max {_ms(service.max())}"
    )
    if late.count:
        text += f"; generator lateness p99 {_ms(late.percentile(99))}"
    return text


# ---- load metrics ---------------------------------------------------------------------------


def _observe_rate_ratio(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    m = ms[0]
    load = _load(m)
    if not load:
        return Observation(None, invalid="the result holds no load figures")
    if load.get("mode") != "open":
        return Observation(None, invalid="a closed-loop ceiling run has no target rate")
    untrusted = _untrusted(m)
    requests = (load.get("requests") or {}).get("ok", 0)
    if untrusted:
        return Observation(None, requests, invalid=untrusted, detail=_load_detail(m))
    value = float(load["achieved_rate"]) / float(load["rate"])
    return Observation(value, requests, detail=_load_detail(m))


def _observe_achieved_rate(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    m = ms[0]
    load = _load(m)
    if not load:
        return Observation(None, invalid="the result holds no load figures")
    untrusted = _untrusted(m)
    requests = (load.get("requests") or {}).get("ok", 0)
    if untrusted:
        return Observation(None, requests, invalid=untrusted, detail=_load_detail(m))
    return Observation(float(load["achieved_rate"]), requests, detail=_load_detail(m))


def _latency_metric(
    name: str, probe: str, pick: Callable[[LatencyHistogram], float | None], description: str
) -> Metric:
    def observe(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        m = ms[0]
        load = _load(m)
        latency = _histogram(load, "latency")
        reason = _untrusted(m) or _too_few(m, latency)
        if reason:
            return Observation(None, latency.count, invalid=reason, detail=_latency_detail(load) if load else "")
        return Observation(pick(latency), latency.count, detail=_latency_detail(load))

    return Metric(f"{probe}.{name}", probe, SubjectKind.CLUSTER, Dimension.DURATION, True, observe, description)


def _observe_errors(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    load = _load(ms[0])
    if not load:
        return Observation(None, invalid="the result holds no load figures")
    errors = (load.get("requests") or {}).get("errors") or {}
    samples = load.get("error_samples") or []
    detail = ", ".join(f"{kind}: {count}" for kind, count in sorted(errors.items())) or "none"
    if samples:
        detail += f"; first: {samples[0]}"
    return Observation(float(_error_count(load)), int((load.get("requests") or {}).get("sent", 0)), detail=detail)


# ---- cluster figures from etcd's own metrics ------------------------------------------------


def _snapshots(m: Measurement) -> Mapping[str, Mapping[str, Any]]:
    return m.data.get("metrics") or {}


def _member_names(m: Measurement) -> dict[str, str]:
    """client URL -> member name, from the member list the load saw."""
    by_url: dict[str, str] = {}
    for member in (m.data.get("result") or {}).get("members") or []:
        for url in member.get("client_urls") or []:
            by_url[url.rstrip("/")] = member.get("name", url)
    return by_url


def peer_rtts(m: Measurement) -> tuple[dict[tuple[str, str], float], list[str]]:
    """(from member, to member) -> mean RTT in seconds of the raw HTTP round trips each member's
    node made to the others' peer listeners; and what could not be measured."""
    result: dict[tuple[str, str], float] = {}
    problems: list[str] = []
    for source, peers in sorted((m.data.get("peer_rtt") or {}).items()):
        if "error" in peers and not isinstance(peers.get("error"), Mapping):
            problems.append(f"{source}: {peers['error']}")
            continue
        for target, measured in sorted(peers.items()):
            samples = measured.get("samples_ns") or []
            if samples:
                result[(source, target)] = sum(samples) / len(samples) / 1e9
            else:
                problems.append(f"{source}->{target}: {'; '.join(measured.get('errors') or []) or 'no reply'}")
    return result, problems


def _no_rtt(problems: list[str]) -> Observation:
    reason = (
        "; ".join(problems)
        if problems
        else "no member-to-member round trip was measured (a single member has no peers)"
    )
    return Observation(None, invalid=reason)


def _observe_peer_rtt(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    rtts, problems = peer_rtts(ms[0])
    if not rtts:
        return _no_rtt(problems)
    (source, target), worst = max(rtts.items(), key=lambda item: item[1])
    listing = ", ".join(f"{a}->{b} {_ms(v)}" for (a, b), v in sorted(rtts.items()))
    detail = f"worst {source}->{target}; mean of HTTP round trips to the peer listener: {listing}"
    if problems:
        detail += f"; not measured: {'; '.join(problems)}"
    return Observation(worst, len(rtts), detail=detail, extra={"pairs": {f"{a}->{b}": v for (a, b), v in rtts.items()}})


def recommended_timing(max_rtt: float) -> tuple[float, float]:
    """(heartbeat, election timeout) in seconds for a maximum average member RTT, after the etcd
    tuning guide: its defaults (100 ms / 1000 ms) suit a local network and tuning is for high
    latency, so they stand unless the RTT calls for more: heartbeat around the maximum average
    RTT (whole milliseconds), election timeout at least 10x the heartbeat."""
    heartbeat = max(ETCD_DEFAULT_HEARTBEAT, math.ceil(max_rtt * 1000 - 1e-9) / 1000.0)
    return heartbeat, max(ETCD_DEFAULT_ELECTION, 10 * heartbeat)


def _timing_metric(name: str, index: int, description: str) -> Metric:
    def observe(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        rtts, problems = peer_rtts(ms[0])
        if not rtts:
            return _no_rtt(problems)
        worst = max(rtts.values())
        heartbeat, election = recommended_timing(worst)
        configured = _settings(ms[0])
        if (heartbeat, election) == (ETCD_DEFAULT_HEARTBEAT, ETCD_DEFAULT_ELECTION):
            advice = "etcd's defaults (100 ms / 1000 ms) suffice for this RTT: keep them"
        else:
            advice = (
                f"etcd's defaults (100 ms / 1000 ms) are too low for this RTT: heartbeat-interval "
                f"~{heartbeat * 1000:g} ms, election-timeout >= {election * 1000:g} ms"
            )
        detail = (
            f"max average member RTT {_ms(worst)}; {advice}"
            f"; the scratch members ran with {configured.get('heartbeat_ms')} ms / {configured.get('election_ms')} ms"
        )
        return Observation((heartbeat, election)[index], len(rtts), detail=detail)

    return Metric(name, NAME, SubjectKind.CLUSTER, Dimension.DURATION, True, observe, description)


def _counter_delta(snap: Mapping[str, Any] | None, name: str) -> float | None:
    snap = snap or {}
    before = promtext.counter_total(snap.get("before") or {}, name)
    after = promtext.counter_total(snap.get("after") or {}, name)
    if after is None:
        return None
    return after - (before or 0.0)


def _observe_leader_changes(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    by_url = _member_names(ms[0])
    deltas = {
        by_url.get(url, url): _counter_delta(snap, "etcd_server_leader_changes_seen_total")
        for url, snap in _snapshots(ms[0]).items()
    }
    seen = {name: d for name, d in deltas.items() if d is not None}
    if not seen:
        return Observation(None, invalid="no member reported etcd_server_leader_changes_seen_total")
    detail = ", ".join(f"{name}: {d:g}" for name, d in sorted(seen.items()))
    return Observation(max(seen.values()), len(seen), detail=f"leader changes seen during the load: {detail}")


# ---- member disk figures ---------------------------------------------------------------------


def disk_p99(snapshots: Mapping[str, Any], histogram: str) -> tuple[dict[str, Any] | None, str]:
    """The delta of ``histogram`` between a member's "before" and "after" snapshots, and why
    there is none (empty string when there is one)."""
    before = ((snapshots.get("before") or {}).get("histograms") or {}).get(histogram, [])
    after = ((snapshots.get("after") or {}).get("histograms") or {}).get(histogram, [])
    if not after:
        return None, f"the member's /metrics had no {histogram}"
    merged = promtext.merge_histograms(promtext.histogram_delta(before, after))
    if merged is None or merged["count"] <= 0:
        return None, f"no {histogram} observation during the run"
    return merged, ""


def disk_detail(merged: Mapping[str, Any]) -> str:
    return (
        f"p99 {_ms(promtext.quantile_interpolated(merged, 0.99))} (interpolated in its bucket as histogram_quantile() does; "
        f"bucket resolution: at most {_ms(promtext.quantile_upper_bound(merged, 0.99))}), "
        f"mean {_ms(promtext.mean(merged))}, n={merged['count']:.0f}"
    )


def _disk_metric(name: str, histogram: str, description: str) -> Metric:
    def observe(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        merged, reason = disk_p99(ms[0].data.get("metrics") or {}, histogram)
        if merged is None:
            return Observation(None, 0, invalid=reason)
        return Observation(
            promtext.quantile_interpolated(merged, 0.99),
            int(merged["count"]),
            detail=disk_detail(merged) + " during the load",
        )

    return Metric(name, NAME, SubjectKind.NODE, Dimension.DURATION, True, observe, description)


def load_metrics(probe: str) -> tuple[Metric, ...]:
    """The write-load metrics, for any probe whose measurement holds ``result.load`` and
    ``settings`` as the etcd driver writes them (the scratch cluster and the live etcd)."""
    return (
        Metric(
            f"{probe}.rate_ratio",
            probe,
            SubjectKind.CLUSTER,
            Dimension.RATIO,
            False,
            _observe_rate_ratio,
            "achieved write rate as a share of the profile's rate",
        ),
        Metric(
            f"{probe}.achieved_rate",
            probe,
            SubjectKind.CLUSTER,
            Dimension.RATE,
            False,
            _observe_achieved_rate,
            "writes per second that succeeded (the ceiling in closed-loop mode)",
        ),
        _latency_metric("max_latency", probe, LatencyHistogram.max, "slowest write, from its scheduled send time"),
        _latency_metric("latency_stddev", probe, LatencyHistogram.stddev, "standard deviation of write latency"),
        _latency_metric("latency_p50", probe, lambda h: h.percentile(50), "median write latency"),
        _latency_metric("latency_p99", probe, lambda h: h.percentile(99), "99th percentile write latency"),
        Metric(
            f"{probe}.errors",
            probe,
            SubjectKind.CLUSTER,
            Dimension.COUNT,
            True,
            _observe_errors,
            "writes that failed (HTTP error, timeout, connection)",
        ),
    )


ETCD_METRICS: tuple[Metric, ...] = (
    *load_metrics(NAME),
    Metric(
        f"{NAME}.leader_changes",
        NAME,
        SubjectKind.CLUSTER,
        Dimension.COUNT,
        True,
        _observe_leader_changes,
        "leader elections any member saw during the load",
    ),
    Metric(
        f"{NAME}.peer_rtt",
        NAME,
        SubjectKind.CLUSTER,
        Dimension.DURATION,
        True,
        _observe_peer_rtt,
        "largest mean round-trip time between two members (HTTP to the peer listener)",
    ),
    _timing_metric(
        f"{NAME}.recommended_heartbeat", 0, "heartbeat-interval the etcd tuning guide recommends for the measured RTT"
    ),
    _timing_metric(
        f"{NAME}.recommended_election_timeout",
        1,
        "election-timeout the etcd tuning guide recommends for the measured RTT",
    ),
    _disk_metric(
        f"{NAME}.wal_fsync_p99", promtext.WAL_FSYNC, "99th percentile WAL fsync of this member during the load"
    ),
    _disk_metric(
        f"{NAME}.backend_commit_p99",
        promtext.BACKEND_COMMIT,
        "99th percentile backend commit of this member during the load",
    ),
)
