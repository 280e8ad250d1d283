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

Its settings (bench/probes/etcd_live/settings.py) come from the command line: the CLI turns the
options into the settings block and validates it with ``DRIVER.settings``, as a scenario's block
is for the other probes.  Its checks and their limits are scenarios/_etcd-live.yaml's; a run with
``--etcd-endpoints`` adds those its settings can measure (``live_checks``) to the scenario's.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from talbench.agents.probes.etcd import admin, promtext
from talbench.agents.probes.etcd.generator import LoadError, LoadSpec, run_load
from talbench.agents.probes.etcd.profiles import KEY_SIZE, PROFILES, VALUE_SIZE
from talbench.bench import scenario as scenario_files
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.metric import Metric, NullProgress, Progress
from talbench.bench.model import CLUSTER_NODE, Check, Measurement, ResultKey
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.etcd_live.metrics import LIVE_METRICS, PROBE, measurable
from talbench.bench.probes.etcd_live.settings import LiveEtcdSettings
from talbench.bench.scenario_include import shipped_files

__all__ = ["DRIVER", "KEY", "PROBE", "LiveEtcdDriver", "live_checks", "measure_live_etcd"]

KEY = ResultKey(PROBE, CLUSTER_NODE)
SCHEMA = 1
QUICK_DURATION = 10.0
CLEANUP_DEADLINE = 30.0
STATUS_TIMEOUT = 5.0
CHECKS = "_etcd-live"  # the shipped scenario fragment that holds its checks


# ---- measuring -----------------------------------------------------------------------------------


def _ssl(config: LiveEtcdSettings) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(cafile=config.cacert)
    if config.cert:
        context.load_cert_chain(config.cert, config.key)
    return context


async def _metrics(config: LiveEtcdSettings) -> dict[str, Any]:
    if not config.metrics_urls:
        return {}
    context = _ssl(config)

    async def one(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        target = url if url.endswith("/metrics") else f"{url}/metrics"
        try:
            async with session.get(
                target,
                ssl=context if context is not None and target.startswith("https://") else True,
                timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT),
            ) as response:
                if response.status != 200:
                    return {"ok": False, "error": f"HTTP {response.status}"}
                return {"ok": True, **promtext.parse(await response.text())}
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}

    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(one(session, url) for url in config.metrics_urls))
    return dict(zip(config.metrics_urls, found, strict=True))


async def _statuses(config: LiveEtcdSettings) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(
            *(asyncio.to_thread(admin.status, url, config.tls, STATUS_TIMEOUT) for url in config.endpoints)
        )
    )


async def measure_live_etcd(config: LiveEtcdSettings, progress: Progress | None = None) -> Measurement:
    """Read (and, when allowed, write under the run prefix) the live etcd.  Raises CouldNotRun
    when no endpoint answers, UsageError when the prefix already holds keys."""
    progress = progress or NullProgress()
    started = time.time()
    progress.update(PROBE, note=f"reading {len(config.endpoints)} endpoint(s)")
    before = await _statuses(config)
    reachable = [s["endpoint"] for s in before if s["ok"]]
    if not reachable:
        problems = "; ".join(f"{s['endpoint']}: {s['error']}" for s in before)
        raise CouldNotRun(
            f"the live etcd did not answer ({problems})",
            hint="check --etcd-endpoints and the client certificate (--etcd-cacert/--etcd-cert/--etcd-key)",
        )
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
    profile = PROFILES[config.load_profile]
    data = {
        "schema": SCHEMA,
        "mode": "writes" if config.allow_writes else "read-only",
        "endpoints": list(config.endpoints),
        "prefix": config.prefix,
        "window_s": window,
        "settings": {
            "profile": config.load_profile,
            "rate": profile.rate,
            "clients": profile.clients,
            "duration": config.duration,
            "min_requests": config.min_requests,
            "quick": config.quick,
        },
        "status_before": before,
        "status_after": after,
        "members": members,
        "metrics": {
            url: {"before": metrics_before.get(url), "after": metrics_after.get(url)} for url in config.metrics_urls
        },
        "result": result,
    }
    return Measurement(KEY, True, data=data, started=started, ended=time.time())


async def _write_load(config: LiveEtcdSettings, reachable: list[str], progress: Progress) -> dict[str, Any]:
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
    profile = PROFILES[config.load_profile]
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
            asyncio.to_thread(
                admin.delete_prefix_until_empty, list(config.endpoints), prefix, config.tls, CLEANUP_DEADLINE
            )
        )
    if cleanup.get("remaining") != 0:
        raise CouldNotRun(
            f"could not confirm that {prefix} is empty on the live etcd ({'; '.join(cleanup.get('errors') or []) or 'timed out'})",
            hint=f"remove what is left with: etcdctl del --prefix {prefix}",
        )
    return {"load": load, "cleanup": cleanup}


# ---- driver, metrics, checks ------------------------------------------------------------------


class LiveEtcdDriver(DeclaredDriver[LiveEtcdSettings]):
    """The live etcd as a probe driver: one cluster-scoped result, ResultKey("etcd-live", "cluster").
    It ignores the fleet: it talks to the endpoints of its settings (no agent-side declaration)."""

    name = PROBE
    declaration = None
    settings_model = LiveEtcdSettings

    def quicken(self, settings: LiveEtcdSettings) -> LiveEtcdSettings:
        return settings if settings.quick else settings.shortened(QUICK_DURATION)

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: LiveEtcdSettings, progress: Progress
    ) -> list[Measurement]:
        if KEY not in keys:
            return []
        return [await measure_live_etcd(settings, progress)]

    def metrics(self) -> Sequence[Metric]:
        return LIVE_METRICS


DRIVER = LiveEtcdDriver()


def live_checks(settings: LiveEtcdSettings) -> tuple[Check, ...]:
    """The checks of a live-etcd run, from scenarios/_etcd-live.yaml: always leader, members and
    database size; the disk and RTT histograms with metrics URLs; the etcdctl check perf criteria
    with writes."""
    metrics = {metric.name: metric for metric in LIVE_METRICS}
    checks = scenario_files.load(shipped_files()[CHECKS], metrics).checks
    wanted = measurable(settings)
    return tuple(check for check in checks if check.metric in wanted)
