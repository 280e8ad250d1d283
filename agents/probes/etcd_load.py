"""Probe ``etcd-load``: drive write load into an etcd cluster (the scratch cluster of this run)
from this node and report what it saw.

Steps, each bounded: wait until every member answers and all agree on a leader; list members;
refuse if the run prefix ``/talbench/<run-id>/`` already holds keys; snapshot every member's
/metrics; run the load (open loop at a rate, or closed loop for the ceiling); snapshot /metrics
and status again; delete the prefix (also when cancelled).  The result holds the raw histograms
and snapshots: summaries and verdicts are the coordinator's.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp

from talbench.agents.etcdload import admin, promtext
from talbench.agents.etcdload.generator import LoadError, LoadSpec, run_load
from talbench.agents.probe import ProbeContext, ProbeParamError

NAME = "etcd-load"
SCHEMA = 1
MAX_ENDPOINTS = 9
METRICS_TIMEOUT = 5.0
PEER_RTT_WAIT = 10.0
CLEANUP_DEADLINE = 8.0  # the agent waits 10 s for a cancelled job to wind down
_ENDPOINT = re.compile(r"^http://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})$")


def run_prefix(run_id: str) -> str:
    return f"/talbench/{run_id}/"


@dataclass(frozen=True)
class LoadParams:
    endpoints: tuple[str, ...]
    mode: str = "open"
    rate: float = 150.0
    clients: int = 50
    duration_s: float = 60.0
    key_size: int = 256
    value_size: int = 1024
    workers: int = 0
    request_timeout_s: float = 5.0
    wait_leader_s: float = 30.0
    metrics: bool = True


def _number(raw: Mapping[str, Any], key: str, default: float, lo: float, hi: float, *, whole: bool = False) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (whole and not isinstance(value, int)):
        raise ProbeParamError(f"{key} must be a {'whole ' if whole else ''}number, got {value!r}")
    if not lo <= value <= hi:
        raise ProbeParamError(f"{key} must be between {lo:g} and {hi:g}, got {value!r}")
    return int(value) if whole else float(value)


def parse_params(raw: Mapping[str, Any]) -> LoadParams:
    known = set(LoadParams.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProbeParamError(f"unknown parameter(s): {', '.join(unknown)}")
    endpoints = raw.get("endpoints")
    if not isinstance(endpoints, (list, tuple)) or not 1 <= len(endpoints) <= MAX_ENDPOINTS:
        raise ProbeParamError(f"endpoints must list 1 to {MAX_ENDPOINTS} client URLs")
    for url in endpoints:
        match = _ENDPOINT.match(url) if isinstance(url, str) else None
        if not match or not 1 <= int(match.group(2)) <= 65535:
            raise ProbeParamError(f"endpoint {url!r} must be http://ADDRESS:PORT")
    mode = raw.get("mode", "open")
    if mode not in ("open", "closed"):
        raise ProbeParamError(f"mode must be open or closed, got {mode!r}")
    metrics = raw.get("metrics", True)
    if not isinstance(metrics, bool):
        raise ProbeParamError(f"metrics must be true or false, got {metrics!r}")
    params = LoadParams(
        endpoints=tuple(endpoints),
        mode=mode,
        rate=_number(raw, "rate", 150.0, 1.0, 100_000.0),
        clients=_number(raw, "clients", 50, 1, 5000, whole=True),
        duration_s=_number(raw, "duration_s", 60.0, 1.0, 600.0),
        key_size=_number(raw, "key_size", 256, 64, 4096, whole=True),
        value_size=_number(raw, "value_size", 1024, 1, 1_048_576, whole=True),
        workers=_number(raw, "workers", 0, 0, 8, whole=True),
        request_timeout_s=_number(raw, "request_timeout_s", 5.0, 0.5, 60.0),
        wait_leader_s=_number(raw, "wait_leader_s", 30.0, 1.0, 300.0),
        metrics=metrics,
    )
    if params.mode == "open" and params.rate * params.duration_s > 20_000_000:
        raise ProbeParamError("rate x duration exceeds 20 million writes")
    return params


async def fetch_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The histograms and counters talbench judges, from one member's /metrics."""
    try:
        async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT)) as response:
            if response.status != 200:
                return {"ok": False, "error": f"HTTP {response.status}"}
            text = await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    return {"ok": True, **promtext.parse(text)}


async def snapshot_metrics(urls: tuple[str, ...], *, wait_peer_rtt_s: float = 0.0) -> dict[str, Any]:
    """Every member's figures.  With ``wait_peer_rtt_s``, poll (bounded) until every member of a
    multi-member cluster has reported its peer RTT: etcd's prober makes its first observation
    about 5 s after a peer joins, so a short run can end before it."""
    give_up = time.monotonic() + wait_peer_rtt_s
    async with aiohttp.ClientSession() as session:
        while True:
            snapshots = dict(zip(urls, await asyncio.gather(*(fetch_metrics(session, url) for url in urls))))
            if len(urls) < 2 or time.monotonic() >= give_up or all(_has_peer_rtt(s, len(urls) - 1) for s in snapshots.values()):
                return snapshots
            await asyncio.sleep(0.5)


def _has_peer_rtt(snapshot: Mapping[str, Any], peers: int) -> bool:
    series = (snapshot.get("histograms") or {}).get(promtext.PEER_RTT) or []
    return snapshot.get("ok", False) and sum(1 for entry in series if entry.get("count", 0) > 0) >= peers


async def _statuses(urls: tuple[str, ...]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(asyncio.to_thread(admin.status, url) for url in urls)))


class EtcdLoadProbe:
    name = NAME

    def parse(self, params: Mapping[str, Any]) -> LoadParams:
        return parse_params(params)

    def time_limit(self, params: LoadParams) -> float:
        return params.wait_leader_s + 30.0 + params.duration_s + params.request_timeout_s + 30.0 + 4 * METRICS_TIMEOUT + PEER_RTT_WAIT + CLEANUP_DEADLINE + 10.0

    async def run(self, params: LoadParams, ctx: ProbeContext) -> dict[str, Any]:
        prefix = run_prefix(ctx.run_id)
        urls = params.endpoints
        if len(prefix.encode()) + 8 > params.key_size:
            raise ProbeParamError(f"key_size {params.key_size} is too small for the prefix {prefix}")
        try:
            healthy = await asyncio.to_thread(admin.wait_for_leader, list(urls), None, params.wait_leader_s)
        except admin.EtcdUnreachable as exc:
            raise RuntimeError(str(exc)) from exc
        member_list = await asyncio.to_thread(admin.members, urls[0])
        if await asyncio.to_thread(admin.prefix_count, urls[0], prefix) > 0:
            raise RuntimeError(f"the run prefix {prefix} already holds keys; refusing to write into it")
        spec = LoadSpec(
            endpoints=urls,
            prefix=prefix,
            mode=params.mode,
            clients=params.clients,
            duration=params.duration_s,
            rate=params.rate if params.mode == "open" else 0.0,
            key_size=params.key_size,
            value_size=params.value_size,
            workers=params.workers,
            request_timeout=params.request_timeout_s,
        )
        cleanup: dict[str, Any] = {}
        try:
            before = await snapshot_metrics(urls) if params.metrics else {}
            try:
                load = await run_load(spec)
            except LoadError as exc:
                raise RuntimeError(f"load generator: {exc}") from exc
            after = await snapshot_metrics(urls, wait_peer_rtt_s=PEER_RTT_WAIT) if params.metrics else {}
            status_after = await _statuses(urls)
        finally:
            cleanup = await asyncio.shield(asyncio.to_thread(admin.delete_prefix_until_empty, list(urls), prefix, None, CLEANUP_DEADLINE))
        return {
            "schema": SCHEMA,
            "node": ctx.node,
            "prefix": prefix,
            "members": member_list,
            "status_before": healthy,
            "status_after": status_after,
            "metrics": {url: {"before": before.get(url), "after": after.get(url)} for url in urls} if params.metrics else {},
            "load": load,
            "cleanup": cleanup,
        }
