"""SIMULATED talbench agents for the coordinator's scale benchmark: the real agent application
(agents/app.py ``make_app``: routes, token check, job registry with its time limits, long polls,
the UDP echo responder) served on a simulated node's address, with a job table whose jobs take
the real parameter models and time limits but return synthetic results instead of measuring.

Simulated jobs: ``rtt`` (samples drawn per pair class: control-plane pairs, same zone, across
zones; they take the stream's real duration), ``mtu`` (every path crosses at 1500 bytes),
``node`` (the host's real facts, once; utilisation columns made up over the real span) and
``fsync`` (real fio, the etcd recipe, run once per simulator and replayed for the other nodes).
Other jobs (etcd, wireguard, kubeprism) are not in the table: a run must use ``--only``.
"""

from __future__ import annotations

import asyncio
import copy
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from talbench.agents.app import AgentConfig, make_app
from talbench.agents.facts import basic_facts, node_facts
from talbench.agents.probe import AgentJob, Probe, ProbeContext, ProbeParamError
from talbench.agents.probes.fsync import probe as fsync_probe
from talbench.agents.probes.node import probe as node_probe
from talbench.agents.probes.registry import declarations
from talbench.agents.probes.rtt import probe as rtt_probe

SIMULATED_JOBS = ("rtt", "mtu", "node", "fsync")
VARIANTS = 32  # distinct sample streams per (pair class, count, interval)
# median RTT (ms) and spread (lognormal sigma) per pair class
RTT_CLASSES = {"control-plane": (0.15, 0.25), "same-zone": (0.2, 0.3), "cross-zone": (0.6, 0.2)}


@dataclass
class Simulation:
    """What the simulated jobs share: which node is where, the cached facts and fsync result."""

    zones: Mapping[str, str | None]  # node name -> zone
    control_planes: frozenset[str]
    data_dir: Path
    _streams: dict[tuple[str, int, float], list[dict[str, Any]]] = field(default_factory=dict)
    _facts: dict[str, Any] | None = None
    _node_facts: dict[str, Any] | None = None
    _fsync: asyncio.Future[dict[str, Any]] | None = None
    _sampling_started: dict[tuple[str, str], float] = field(default_factory=dict)

    # ---- rtt --------------------------------------------------------------------------------

    def pair_class(self, a: str, b: str) -> str:
        if a in self.control_planes and b in self.control_planes:
            return "control-plane"
        za, zb = self.zones.get(a), self.zones.get(b)
        return "same-zone" if za is not None and za == zb else "cross-zone"

    def stream(self, kind: str, count: int, interval: float) -> dict[str, Any]:
        key = (kind, count, interval)
        pool = self._streams.get(key)
        if pool is None:
            pool = self._streams[key] = [self._make_stream(kind, count, interval) for _ in range(VARIANTS)]
        return random.choice(pool)

    @staticmethod
    def _make_stream(kind: str, count: int, interval: float) -> dict[str, Any]:
        median_ms, sigma = RTT_CLASSES[kind]
        rng = random.Random()
        samples = [int(rng.lognormvariate(0.0, sigma) * median_ms * 1e6) for _ in range(count)]
        dwells = [int(rng.uniform(8_000, 30_000)) for _ in range(count)]
        t1 = [int(i * interval * 1e9) for i in range(count)]
        t2 = [t + s // 2 for t, s in zip(t1, samples, strict=True)]
        return {
            "sent": count,
            "received": count,
            "samples_ns": samples,
            "dwell_ns": dwells,
            "t1_base_ns": time.time_ns(),
            "t1_ns": t1,
            "t2_base_ns": time.time_ns(),
            "t2_ns": t2,
            "stamps": {"t1_kernel": count, "t2_kernel": count, "t4_kernel": count, "reflected": count},
            "lost": 0,
            "late": 0,
            "unusable": 0,
            "duplicates": 0,
            "errors": [],
            "error_count": 0,
            "send_lag_max_ms": 0.3,
        }

    async def rtt(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        # the real stream's duration: the start offset (half the stagger on average) and the packets
        await asyncio.sleep(params.stagger / 2 + (params.warmup + params.count) * params.interval)
        peers = {
            peer.name: {
                "host": peer.host,
                "port": peer.port,
                **self.stream(self.pair_class(ctx.node, peer.name), params.count, params.interval),
            }
            for peer in params.peers
        }
        return rtt_probe.job_result(params, peers)

    # ---- mtu --------------------------------------------------------------------------------

    async def mtu(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        await asyncio.sleep(0.05 * -(-len(params.peers) // 16))
        ceiling = min(params.high, 1500)
        one = {
            "family": 4,
            "local_mtu": 1500,
            "low": params.low,
            "ceiling": ceiling,
            "mtu": ceiling,
            "tried": [[params.low, True], [ceiling, True]],
            "error": None,
            "socket_errors": [],
        }
        return {"peers": {p.name: {"host": p.host, "port": p.port, **one} for p in params.peers}}

    # ---- node -------------------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        if self._facts is None:
            self._facts = basic_facts()
        return self._facts

    async def node(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        if self._node_facts is None:
            self._node_facts = await asyncio.to_thread(node_facts, self.data_dir, params.etcd_dir)
        facts = {**self._node_facts, "hostname": ctx.node}
        key = (ctx.node, ctx.run_id)
        if params.mode == "start":
            if node_probe.CLEANUP_NAME in ctx.cleanup.names(ctx.run_id):
                raise ProbeParamError(f"node sampling already runs for run {ctx.run_id}")

            async def release() -> None:
                self._sampling_started.pop(key, None)

            ctx.cleanup.add(ctx.run_id, node_probe.CLEANUP_NAME, release)
            self._sampling_started[key] = time.time()
            return {
                "schema": node_probe.SCHEMA_VERSION,
                "mode": "start",
                "interval_s": params.interval,
                "max_duration_s": params.max_duration,
            }
        if params.mode == "collect":
            started = self._sampling_started.get(key)
            if started is None:
                raise ProbeParamError(f"no node sampling runs for run {ctx.run_id} (start it first)")
            await ctx.cleanup.release(ctx.run_id, node_probe.CLEANUP_NAME)
            return {
                "schema": node_probe.SCHEMA_VERSION,
                "mode": "span",
                "facts": facts,
                "sampling": self._sampling(started, time.time(), params.interval, facts),
            }
        started = time.time()
        await asyncio.sleep(params.duration)
        return {
            "schema": node_probe.SCHEMA_VERSION,
            "mode": "window",
            "facts": facts,
            "sampling": self._sampling(started, time.time(), params.interval, facts),
        }

    @staticmethod
    def _sampling(start: float, end: float, interval: float, facts: Mapping[str, Any]) -> dict[str, Any]:
        cpus = float(facts.get("cpus") or 2)
        memory = float(facts.get("memory_bytes") or 8 << 30)
        rows: list[tuple[float, ...]] = []
        t, busy, total, own = start, 1000.0, 5000.0, 1.0
        while True:
            rows.append((t, busy, total, own, memory * random.uniform(0.3, 0.4), 48e6))
            if t >= end:
                break
            step = min(interval, end - t) or interval
            t += step
            total += cpus * step
            busy += cpus * step * random.uniform(0.1, 0.3)
            own += step * 0.01
        return node_probe.columns_of(interval, 0, rows)

    # ---- fsync ------------------------------------------------------------------------------

    async def fsync(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        """Real fio once (the first node asked); the others get its result after as long."""
        if self._fsync is None:
            self._fsync = asyncio.ensure_future(fsync_probe.measure(params, ctx))
            return copy.deepcopy(await self._fsync)
        result = copy.deepcopy(await asyncio.shield(self._fsync))
        await asyncio.sleep(float(result.get("runtime_ms") or 0) / 1000.0)
        return result

    # ---- the job table ----------------------------------------------------------------------

    def jobs(self) -> dict[str, Probe[BaseModel]]:
        # the real jobs' parameters and time limits, with the simulated measurements
        real = {job.name: job for d in declarations().values() for job in d.jobs if isinstance(job, AgentJob)}
        measures = {"rtt": self.rtt, "mtu": self.mtu, "node": self.node, "fsync": self.fsync}
        return {name: AgentJob(name, real[name].params, measures[name], real[name].limit) for name in SIMULATED_JOBS}


class AgentServer:
    """One simulated node's agent: started when its pod runs, stopped when the pod goes."""

    def __init__(
        self, sim: Simulation, node: str, address: str, port: int, token: str, tls: ssl.SSLContext | None = None
    ) -> None:
        config = AgentConfig(
            node=node,
            token=token,
            data_dir=sim.data_dir,
            listen_host=address,
            listen_port=port,
            run_idle_release_s=0,  # no reaper task per simulated agent
        )
        self.app = make_app(config, sim.jobs(), facts=sim.facts)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.address, self.port, self.tls = address, port, tls

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, self.port, backlog=128, reuse_address=True, ssl_context=self.tls)
        await site.start()

    async def stop(self) -> None:
        await self.runner.cleanup()
