"""The live etcd of a running cluster, on request only.  The coordinator talks to it directly
(``--etcd-endpoints URL,...`` with ``--etcd-cacert/--etcd-cert/--etcd-key``).

Without ``--allow-live-etcd-writes`` nothing is written: member list, every endpoint's status
(db size, leader, raft term) and, when metrics URLs are given (Talos serves etcd's metrics on
``listen-metrics-urls``, often :2381), the histograms etcd_disk_wal_fsync_duration_seconds
(p99 < 10 ms), etcd_disk_backend_commit_duration_seconds (p99 < 25 ms) and
etcd_network_peer_round_trip_time_seconds, judged from the delta of their cumulative buckets
over the observation window (quantiles interpolated in their bucket as Prometheus'
histogram_quantile() does: bucket resolution).

With the flag, a write load (profile s unless named) goes under ``/talbench/<run-id>/`` only:
the run refuses to start when that prefix holds keys, and deletes the prefix at the end, on
error and on cancellation (Ctrl-C).  Nothing here compacts or defragments.

For the CLI: build a ``LiveEtcdConfig`` with ``live_etcd_config(...)``, add
``LiveEtcdDriver(config)`` to the drivers (probe name ``etcd-live``, settings
``driver.settings({}, quick=...)``) and ``live_checks(config)`` to the scenario's checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import aiohttp

from talbench.agents.etcdload import admin, promtext
from talbench.agents.etcdload.generator import LoadError, LoadSpec, TlsFiles, run_load
from talbench.agents.etcdload.profiles import KEY_SIZE, PROFILES, VALUE_SIZE
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.model import Check, Measurement, Node, Observation, ResultKey, Scope, Subject, SubjectKind
from talbench.bench.metric import Metric, NullProgress, Progress
from talbench.bench.probes.etcd_metrics import disk_detail, disk_p99, load_metrics
from talbench.bench.units import Dimension, format_value, parse_quantity

PROBE = "etcd-live"
KEY = ResultKey(PROBE, "cluster")
SCHEMA = 1
DEFAULT_DURATION = 60.0
QUICK_DURATION = 10.0
CLEANUP_DEADLINE = 30.0
STATUS_TIMEOUT = 5.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class LiveEtcdConfig:
    endpoints: tuple[str, ...]
    run_id: str
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    allow_writes: bool = False
    profile: str = "s"
    duration: float = DEFAULT_DURATION  # write load, or the observation window of the metrics
    metrics_urls: tuple[str, ...] = ()
    min_requests: int = 100
    request_timeout: float = 5.0
    workers: int = 0
    quick: bool = False

    @property
    def prefix(self) -> str:
        return f"/talbench/{self.run_id}/"

    @property
    def tls(self) -> TlsFiles | None:
        if self.cacert or self.cert or self.key:
            return TlsFiles(self.cacert, self.cert, self.key)
        return None


def _urls(raw: str | Sequence[str], what: str) -> tuple[str, ...]:
    items = [u.strip() for u in (raw.split(",") if isinstance(raw, str) else raw) if u and u.strip()]
    for url in items:
        try:
            admin.parse_endpoint(url)
        except ValueError as exc:
            raise UsageError(f"{what}: {exc}") from exc
    return tuple(dict.fromkeys(u.rstrip("/") for u in items))


def live_etcd_config(
    endpoints: str | Sequence[str],
    *,
    run_id: str,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    allow_writes: bool = False,
    profile: str | None = None,
    metrics_urls: str | Sequence[str] = (),
    duration: float | None = None,
    quick: bool = False,
) -> LiveEtcdConfig:
    """Validate the command-line options; UsageError names the bad one."""
    urls = _urls(endpoints, "--etcd-endpoints")
    if not urls:
        raise UsageError("--etcd-endpoints needs at least one URL (https://HOST:2379,...)")
    if not _RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id!r} cannot name an etcd prefix")
    for option, path in (("--etcd-cacert", cacert), ("--etcd-cert", cert), ("--etcd-key", key)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{option} {path}: no such file")
    if (cert is None) != (key is None):
        raise UsageError("--etcd-cert and --etcd-key go together")
    if (cacert or cert) and not all(u.startswith("https://") for u in urls):
        raise UsageError("--etcd-cacert/--etcd-cert need https:// endpoints")
    if profile is not None and not allow_writes:
        raise UsageError("--etcd-profile writes to the live etcd: add --allow-live-etcd-writes to allow it")
    chosen = profile or "s"
    if chosen not in PROFILES:
        raise UsageError(f"--etcd-profile {chosen!r}: one of {', '.join(PROFILES)}")
    window = DEFAULT_DURATION if duration is None else duration
    if not 1 <= window <= 600:
        raise UsageError(f"etcd duration {window:g}s: between 1 s and 600 s")
    if quick:
        window = min(window, QUICK_DURATION)
    return LiveEtcdConfig(
        endpoints=urls,
        run_id=run_id,
        cacert=cacert,
        cert=cert,
        key=key,
        allow_writes=allow_writes,
        profile=chosen,
        duration=window,
        metrics_urls=_urls(metrics_urls, "--etcd-metrics-urls"),
        quick=quick,
    )


# ---- measuring -----------------------------------------------------------------------------------


def _ssl(config: LiveEtcdConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(cafile=config.cacert)
    if config.cert:
        context.load_cert_chain(config.cert, config.key)
    return context


async def _metrics(config: LiveEtcdConfig) -> dict[str, Any]:
    if not config.metrics_urls:
        return {}
    context = _ssl(config)

    async def one(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        target = url if url.endswith("/metrics") else f"{url}/metrics"
        try:
            async with session.get(target, ssl=context if target.startswith("https://") else None,
                                   timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT)) as response:
                if response.status != 200:
                    return {"ok": False, "error": f"HTTP {response.status}"}
                return {"ok": True, **promtext.parse(await response.text())}
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}

    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(one(session, url) for url in config.metrics_urls))
    return dict(zip(config.metrics_urls, found))


async def _statuses(config: LiveEtcdConfig) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(asyncio.to_thread(admin.status, url, config.tls, STATUS_TIMEOUT) for url in config.endpoints)))


async def measure_live_etcd(config: LiveEtcdConfig, progress: Progress | None = None) -> Measurement:
    """Read (and, when allowed, write under the run prefix) the live etcd.  Raises CouldNotRun
    when no endpoint answers, UsageError when the prefix already holds keys."""
    progress = progress or NullProgress()
    started = time.time()
    progress.update(PROBE, note=f"reading {len(config.endpoints)} endpoint(s)")
    before = await _statuses(config)
    reachable = [s["endpoint"] for s in before if s["ok"]]
    if not reachable:
        problems = "; ".join(f"{s['endpoint']}: {s['error']}" for s in before)
        raise CouldNotRun(f"the live etcd did not answer ({problems})",
                          hint="check --etcd-endpoints and the client certificate (--etcd-cacert/--etcd-cert/--etcd-key)")
    try:
        members = await asyncio.to_thread(admin.members, reachable[0], config.tls, STATUS_TIMEOUT)
    except (admin.GatewayError, OSError, ValueError) as exc:
        raise CouldNotRun(f"the live etcd at {reachable[0]} did not list its members: {exc}".splitlines()[0]) from exc
    metrics_before = await _metrics(config)
    window_start = time.monotonic()
    result: dict[str, Any] = {"members": members}
    if config.allow_writes:
        result.update(await _write_load(config, reachable, progress))
    elif config.metrics_urls:
        progress.update(PROBE, note=f"observing etcd's metrics for {config.duration:g}s (read-only)")
        await asyncio.sleep(config.duration)
    window = time.monotonic() - window_start
    metrics_after = await _metrics(config)
    after = await _statuses(config)
    profile = PROFILES[config.profile]
    data = {
        "schema": SCHEMA,
        "mode": "writes" if config.allow_writes else "read-only",
        "endpoints": list(config.endpoints),
        "prefix": config.prefix,
        "window_s": window,
        "settings": {"profile": config.profile, "rate": profile.rate, "clients": profile.clients, "duration": config.duration,
                     "min_requests": config.min_requests, "quick": config.quick},
        "status_before": before,
        "status_after": after,
        "members": members,
        "metrics": {url: {"before": metrics_before.get(url), "after": metrics_after.get(url)} for url in config.metrics_urls},
        "result": result,
    }
    return Measurement(KEY, True, data=data, started=started, ended=time.time())


async def _write_load(config: LiveEtcdConfig, reachable: list[str], progress: Progress) -> dict[str, Any]:
    prefix = config.prefix
    try:
        held = await asyncio.to_thread(admin.prefix_count, reachable[0], prefix, config.tls, 10.0)
    except (admin.GatewayError, OSError, ValueError) as exc:
        raise CouldNotRun(f"the live etcd at {reachable[0]} could not be read: {exc}".splitlines()[0]) from exc
    if held:
        raise UsageError(
            f"the live etcd already holds {held} key(s) under {prefix}: refusing to write there "
            f"(remove them with: etcdctl del --prefix {prefix})"
        )
    profile = PROFILES[config.profile]
    spec = LoadSpec(
        endpoints=tuple(reachable),
        prefix=prefix,
        mode="open",
        clients=profile.clients,
        duration=config.duration,
        rate=profile.rate,
        key_size=KEY_SIZE,
        value_size=VALUE_SIZE,
        workers=config.workers,
        request_timeout=config.request_timeout,
        tls=config.tls,
    )
    progress.update(PROBE, note=f"writing under {prefix}: profile {profile.label}, {config.duration:g}s")
    cleanup: dict[str, Any] = {}
    try:
        load = await run_load(spec)
    except LoadError as exc:
        raise CouldNotRun(f"the write load on the live etcd could not run: {exc}") from exc
    finally:
        # also on Ctrl-C (CancelledError): the workers are gone (run_load's finally), now the keys
        progress.update(PROBE, note=f"deleting {prefix}")
        cleanup = await asyncio.shield(
            asyncio.to_thread(admin.delete_prefix_until_empty, list(config.endpoints), prefix, config.tls, CLEANUP_DEADLINE)
        )
    if cleanup.get("remaining") != 0:
        raise CouldNotRun(
            f"could not confirm that {prefix} is empty on the live etcd ({'; '.join(cleanup.get('errors') or []) or 'timed out'})",
            hint=f"remove what is left with: etcdctl del --prefix {prefix}",
        )
    return {"load": load, "cleanup": cleanup}


# ---- driver, metrics, checks ------------------------------------------------------------------


class LiveEtcdDriver:
    """The live etcd as a probe driver: one cluster-scoped result, ResultKey("etcd-live", "cluster").
    It ignores the fleet: it talks to the endpoints of its config."""

    name = PROBE

    def __init__(self, config: LiveEtcdConfig) -> None:
        self.config = config

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> LiveEtcdConfig:
        if raw:
            raise UsageError("the live etcd takes its settings from the command line, not from the scenario")
        if quick and not self.config.quick:
            return replace(self.config, duration=min(self.config.duration, QUICK_DURATION), quick=True)
        return self.config

    async def run(self, keys: frozenset[ResultKey], fleet: Fleet, settings: LiveEtcdConfig, progress: Progress) -> list[Measurement]:
        if KEY not in keys:
            return []
        return [await measure_live_etcd(settings, progress)]

    def metrics(self) -> Sequence[Metric]:
        return LIVE_METRICS


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
        return Observation(None, invalid="etcd made no peer RTT observation in the window (its prober reports every 30 s)")
    return Observation(promtext.quantile_interpolated(total, 0.99), int(total["count"]), detail=disk_detail(total) + " (every member to every peer)")


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
    _worst_disk(promtext.WAL_FSYNC, "99th percentile WAL fsync of the worst member over the window", f"{PROBE}.wal_fsync_p99"),
    _worst_disk(promtext.BACKEND_COMMIT, "99th percentile backend commit of the worst member over the window", f"{PROBE}.backend_commit_p99"),
    Metric(f"{PROBE}.peer_rtt_p99", PROBE, SubjectKind.CLUSTER, Dimension.DURATION, True, _observe_peer_rtt,
           "99th percentile peer round-trip time, all members pooled, over the window"),
    Metric(f"{PROBE}.has_leader", PROBE, SubjectKind.CLUSTER, Dimension.COUNT, False, _observe_leader,
           "1 when every endpoint answered and all name the same leader"),
    Metric(f"{PROBE}.db_size", PROBE, SubjectKind.CLUSTER, Dimension.BYTES, True, _observe_db_size, "largest member database"),
    Metric(f"{PROBE}.members", PROBE, SubjectKind.CLUSTER, Dimension.COUNT, False, _observe_members, "members in the member list"),
)

_SOURCE_PERF = "etcdctl check perf (etcd v3.4) criteria, applied to the live etcd under a write load in /talbench/<run-id>/"
_SOURCE_DISK = "etcd guidance on disks (p99 wal fsync < 10 ms, backend commit < 25 ms), from the delta of etcd's own histograms"


def _check(name: str, metric: str, source: str, description: str, *, warn: str | None = None, fail: str | None = None) -> Check:
    dimension = next(m.dimension for m in LIVE_METRICS if m.name == metric)
    return Check(
        name=name,
        metric=metric,
        scope=Scope.CLUSTER,
        warn=parse_quantity(warn, dimension) if warn is not None else None,
        fail=parse_quantity(fail, dimension) if fail is not None else None,
        source=source,
        description=description,
    )


def live_checks(config: LiveEtcdConfig) -> tuple[Check, ...]:
    """The checks of a live-etcd run: always leader/members/db size; the disk and RTT
    histograms with metrics URLs; the etcdctl check perf criteria with writes."""
    checks = [
        _check("live-etcd-leader", f"{PROBE}.has_leader", "etcd: a cluster without one agreed leader cannot commit writes",
               "every endpoint answers and names the same leader", fail="1"),
        _check("live-etcd-members", f"{PROBE}.members", "Reported, not judged", "members in the member list"),
        _check("live-etcd-db-size", f"{PROBE}.db_size", "Reported, not judged (etcd's default quota is 2 GiB)", "largest member database"),
    ]
    if config.metrics_urls:
        checks += [
            _check("live-etcd-wal-fsync", f"{PROBE}.wal_fsync_p99", _SOURCE_DISK, "p99 WAL fsync of the worst member", fail="10ms"),
            _check("live-etcd-backend-commit", f"{PROBE}.backend_commit_p99", _SOURCE_DISK, "p99 backend commit of the worst member", fail="25ms"),
            _check("live-etcd-peer-rtt", f"{PROBE}.peer_rtt_p99", "Reported, not judged (etcd's own prober)", "p99 peer round trip"),
        ]
    if config.allow_writes:
        checks += [
            _check("live-etcd-write-rate", f"{PROBE}.rate_ratio", _SOURCE_PERF, "achieved write rate as a share of the profile's", fail="90 %"),
            _check("live-etcd-slowest-write", f"{PROBE}.max_latency", _SOURCE_PERF, "slowest write", fail="500ms"),
            _check("live-etcd-latency-stddev", f"{PROBE}.latency_stddev", _SOURCE_PERF, "spread of write latency", fail="100ms"),
            _check("live-etcd-write-errors", f"{PROBE}.errors", _SOURCE_PERF, "failed writes", fail="1"),
            _check("live-etcd-latency-p99", f"{PROBE}.latency_p99", "Reported, not judged", "99th percentile write latency"),
        ]
    return tuple(checks)
