"""The live etcd's metrics and checks: pure functions from the one cluster-scoped measurement
(``ResultKey("etcd-live", "cluster")``) to observations, and which of them a run can observe:
always leader, members and database size; the disk and peer-RTT histograms with
``--etcd-metrics-urls``; the write load's figures with ``--allow-live-etcd-writes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talbench.agents.probes.etcd import promtext
from talbench.bench.metric import Metric
from talbench.bench.model import Measurement, Node, Observation, Subject, SubjectKind
from talbench.bench.probes.etcd.metrics import disk_detail, disk_p99, load_metrics
from talbench.bench.probes.etcd_live.settings import LiveEtcdSettings
from talbench.bench.units import Dimension, format_value

PROBE = "etcd-live"


def _worst_disk(histogram: str, description: str, name: str) -> Metric:
    def observe(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        snapshots = ms[0].data.get("metrics") or {}
        if not snapshots:
            return Observation(None, invalid="no --etcd-metrics-urls given: etcd's histograms were not read")
        found: dict[str, tuple[float, dict[str, Any]]] = {}
        reasons = []
        for url, snap in snapshots.items():
            merged, reason = disk_p99(snap or {}, histogram)
            if merged is None:
                reasons.append(f"{url}: {reason or (snap or {}).get('after', {}).get('error', 'no data')}")
                continue
            found[url] = (promtext.quantile_interpolated(merged, 0.99) or 0.0, merged)
        if not found:
            return Observation(None, invalid="; ".join(reasons))
        url, (value, merged) = max(found.items(), key=lambda item: item[1][0])
        window = ms[0].data.get("window_s", 0.0)
        detail = f"worst member {url}: {disk_detail(merged)} over {window:.0f}s"
        if reasons:
            detail += f"; not read: {'; '.join(reasons)}"
        return Observation(value, int(sum(m["count"] for _, m in found.values())), detail=detail)

    return Metric(name, PROBE, SubjectKind.CLUSTER, Dimension.DURATION, True, observe, description)


def _observe_peer_rtt(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    snapshots = ms[0].data.get("metrics") or {}
    if not snapshots:
        return Observation(None, invalid="no --etcd-metrics-urls given: etcd's histograms were not read")
    merged_all = []
    for snap in snapshots.values():
        merged, _ = disk_p99(snap or {}, promtext.PEER_RTT)
        if merged is not None:
            merged_all.append(merged)
    total = promtext.merge_histograms(merged_all)
    if total is None or total["count"] <= 0:
        return Observation(
            None, invalid="etcd made no peer RTT observation in the window (its prober reports every 30 s)"
        )
    return Observation(
        promtext.quantile_interpolated(total, 0.99),
        int(total["count"]),
        detail=disk_detail(total) + " (every member to every peer)",
    )


def _observe_leader(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    statuses = ms[0].data.get("status_after") or []
    answering = [s for s in statuses if s.get("ok")]
    leaders = {s["leader"] for s in answering}
    has = 1.0 if answering and len(leaders) == 1 and "0" not in leaders else 0.0
    silent = [s["endpoint"] for s in statuses if not s.get("ok")]
    terms = sorted({s.get("raft_term") for s in answering})
    detail = f"leader {', '.join(sorted(leaders)) or 'none'}, raft term {', '.join(map(str, terms)) or '-'}, {len(answering)}/{len(statuses)} endpoints answered"
    if silent:
        detail += f" (silent: {', '.join(silent)})"
    return Observation(has, len(statuses), detail=detail)


def _observe_db_size(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    answering = [s for s in ms[0].data.get("status_after") or [] if s.get("ok")]
    if not answering:
        return Observation(None, invalid="no endpoint answered")
    sizes = ", ".join(f"{s['endpoint']}: {format_value(s['db_size'], Dimension.BYTES)}" for s in answering)
    return Observation(float(max(s["db_size"] for s in answering)), len(answering), detail=sizes)


def _observe_members(subject: Subject, ms: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    members = ms[0].data.get("members") or []
    names = ", ".join(f"{m['name'] or '(unstarted)'}{' (learner)' if m.get('learner') else ''}" for m in members)
    return Observation(float(len(members)), len(members), detail=names)


LIVE_METRICS: tuple[Metric, ...] = (
    *load_metrics(PROBE),
    _worst_disk(
        promtext.WAL_FSYNC, "99th percentile WAL fsync of the worst member over the window", f"{PROBE}.wal_fsync_p99"
    ),
    _worst_disk(
        promtext.BACKEND_COMMIT,
        "99th percentile backend commit of the worst member over the window",
        f"{PROBE}.backend_commit_p99",
    ),
    Metric(
        f"{PROBE}.peer_rtt_p99",
        PROBE,
        SubjectKind.CLUSTER,
        Dimension.DURATION,
        True,
        _observe_peer_rtt,
        "99th percentile peer round-trip time, all members pooled, over the window",
    ),
    Metric(
        f"{PROBE}.has_leader",
        PROBE,
        SubjectKind.CLUSTER,
        Dimension.COUNT,
        False,
        _observe_leader,
        "1 when every endpoint answered and all name the same leader",
    ),
    Metric(
        f"{PROBE}.db_size",
        PROBE,
        SubjectKind.CLUSTER,
        Dimension.BYTES,
        True,
        _observe_db_size,
        "largest member database",
    ),
    Metric(
        f"{PROBE}.members",
        PROBE,
        SubjectKind.CLUSTER,
        Dimension.COUNT,
        False,
        _observe_members,
        "members in the member list",
    ),
)

HISTOGRAMS = frozenset({f"{PROBE}.wal_fsync_p99", f"{PROBE}.backend_commit_p99", f"{PROBE}.peer_rtt_p99"})
LOAD = frozenset(metric.name for metric in load_metrics(PROBE))


def measurable(settings: LiveEtcdSettings) -> frozenset[str]:
    """The metrics a live-etcd run with these settings can observe: leader, members and database
    size always; etcd's histograms with metrics URLs; the write load's figures with writes.  The
    rest are left out of the run's checks rather than judged invalid."""
    names = {metric.name for metric in LIVE_METRICS} - HISTOGRAMS - LOAD
    if settings.metrics_urls:
        names |= HISTOGRAMS
    if settings.allow_writes:
        names |= LOAD
    return frozenset(names)
