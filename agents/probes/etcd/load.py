"""Job ``etcd.load``: drive write load into an etcd cluster (the scratch cluster of this run)
from this node and report what it saw.

Steps, each bounded: wait until every member answers and all agree on a leader; list members;
refuse if the run prefix ``/talbench/<run-id>/`` already holds keys; snapshot every member's
/metrics; run the load (open loop at a rate, or closed loop for the ceiling); snapshot /metrics
and status again; delete the prefix (also when cancelled).  The result holds the raw histograms
and snapshots: summaries and verdicts are the coordinator's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from talbench.agents.params import param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeParamError
from talbench.agents.probes.etcd import admin, promtext
from talbench.agents.probes.etcd.generator import LoadError, LoadSpec, run_load
from talbench.agents.probes.etcd.settings import MAX_MEMBERS, LoadShape, MemberUrl, Startup

SCHEMA = 1
METRICS_TIMEOUT = 5.0
PEER_RTT_WAIT = 10.0
CLEANUP_DEADLINE = 8.0  # the agent waits 10 s for a cancelled job to wind down


def run_prefix(run_id: str) -> str:
    return f"/talbench/{run_id}/"


class LoadParams(LoadShape, Startup):
    """The scenario's load, sent to one control plane's agent with the members' client URLs; it
    waits up to ``start_timeout`` for them to agree on a leader."""

    endpoints: tuple[MemberUrl, ...] = param(
        sequence=True, min_length=1, max_length=MAX_MEMBERS, help="the members' client URLs (http://ADDRESS:PORT)"
    )
    metrics: bool = param(True, help="snapshot every member's /metrics before and after the load")


async def fetch_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The histograms and counters talbench judges, from one member's /metrics."""
    try:
        async with session.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT)) as response:
            if response.status != 200:
                return {"ok": False, "error": f"HTTP {response.status}"}
            text = await response.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    return {"ok": True, **promtext.parse(text)}


async def snapshot_metrics(urls: tuple[str, ...], *, wait_peer_rtt_s: float = 0.0) -> dict[str, Any]:
    """Every member's figures.  With ``wait_peer_rtt_s``, poll (bounded) until every member of a
    multi-member cluster has reported its peer RTT: etcd's prober makes its first observation
    about 5 s after a peer joins, so a short run can end before it."""
    give_up = time.monotonic() + wait_peer_rtt_s
    async with aiohttp.ClientSession() as session:
        while True:
            snapshots = dict(
                zip(urls, await asyncio.gather(*(fetch_metrics(session, url) for url in urls)), strict=True)
            )
            if (
                len(urls) < 2
                or time.monotonic() >= give_up
                or all(_has_peer_rtt(s, len(urls) - 1) for s in snapshots.values())
            ):
                return snapshots
            await asyncio.sleep(0.5)


def _has_peer_rtt(snapshot: Mapping[str, Any], peers: int) -> bool:
    series = (snapshot.get("histograms") or {}).get(promtext.PEER_RTT) or []
    return snapshot.get("ok", False) and sum(1 for entry in series if entry.get("count", 0) > 0) >= peers


async def _statuses(urls: tuple[str, ...]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(asyncio.to_thread(admin.status, url) for url in urls)))


def time_limit(params: LoadParams) -> float:
    return (
        params.start_timeout
        + 30.0
        + params.duration
        + params.request_timeout
        + 30.0
        + 4 * METRICS_TIMEOUT
        + PEER_RTT_WAIT
        + CLEANUP_DEADLINE
        + 10.0
    )


async def measure(params: LoadParams, ctx: ProbeContext) -> dict[str, Any]:
    prefix = run_prefix(ctx.run_id)
    urls = params.endpoints
    if len(prefix.encode()) + 8 > params.key_size:
        raise ProbeParamError(f"key_size {params.key_size} is too small for the prefix {prefix}")
    try:
        healthy = await asyncio.to_thread(admin.wait_for_leader, list(urls), None, params.start_timeout)
    except admin.EtcdUnreachable as exc:
        raise RuntimeError(str(exc)) from exc
    member_list = await asyncio.to_thread(admin.members, urls[0])
    if await asyncio.to_thread(admin.prefix_count, urls[0], prefix) > 0:
        raise RuntimeError(f"the run prefix {prefix} already holds keys; refusing to write into it")
    open_loop = params.mode == "open"
    spec = LoadSpec(
        endpoints=urls,
        prefix=prefix,
        mode="open" if open_loop else "closed",
        clients=params.clients,
        duration=params.duration,
        rate=params.rate if open_loop else 0.0,
        key_size=params.key_size,
        value_size=params.value_size,
        workers=params.workers,
        request_timeout=params.request_timeout,
        transport=params.transport,
        channels=params.channels,
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
        cleanup = await asyncio.shield(
            asyncio.to_thread(admin.delete_prefix_until_empty, list(urls), prefix, None, CLEANUP_DEADLINE)
        )
    return {
        "schema": SCHEMA,
        "node": ctx.node,
        "prefix": prefix,
        "members": member_list,
        "status_before": healthy,
        "status_after": status_after,
        "metrics": {url: {"before": before.get(url), "after": after.get(url)} for url in urls}
        if params.metrics
        else {},
        "load": load,
        "cleanup": cleanup,
    }


JOB = AgentJob("etcd.load", LoadParams, measure, time_limit)
