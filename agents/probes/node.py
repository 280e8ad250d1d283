"""node probe: the node's size (cores, memory, etcd's filesystem) and its CPU and memory
utilisation sampled every ``interval`` seconds over a span of time, as raw counters.

Two ways to span time:

* ``mode: window``: one job samples for ``duration`` seconds and returns facts and samples.
* ``mode: start`` then ``mode: collect``: the first job starts a sampler for the run and returns
  at once; the sampler keeps going (bounded by ``max_duration``) while the run's other probes
  measure; the second job stops it and returns facts and samples.  The sampler is registered in
  the run's CleanupRegistry, so a run that never collects still stops it.

Samples are cumulative counters (columns of equal length): machine CPU busy and total seconds
(summed over CPUs), the CPU seconds of the agent's own process tree (fio, etcd, iperf3 it
started), memory in use (total - available) and the tree's resident memory.  The coordinator
computes utilisation from counter differences, so the figure covers the whole span, and can
subtract talbench's own load.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import psutil

from talbench.agents.facts import node_facts
from talbench.agents.probe import ProbeContext, ProbeParamError

SCHEMA_VERSION = 1
MODES = ("window", "start", "collect")
CLEANUP_NAME = "node-sampler"
COLUMNS = ("t", "cpu_busy_s", "cpu_total_s", "own_cpu_s", "mem_used_bytes", "own_rss_bytes")
FACTS_ALLOWANCE = 15.0  # seconds for facts (tool versions, device resolution)


@dataclass(frozen=True)
class NodeParams:
    mode: str = "window"
    duration: float = 10.0  # window: seconds of sampling
    interval: float = 1.0  # seconds between samples
    max_duration: float = 3600.0  # start: the sampler stops by itself after this
    etcd_dir: str = "/var/lib/etcd"


def parse_params(raw: Mapping[str, Any]) -> NodeParams:
    known = set(NodeParams.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ProbeParamError(f"unknown node parameter(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    mode = raw.get("mode", "window")
    if mode not in MODES:
        raise ProbeParamError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    duration = _seconds(raw, "duration", 10.0, 0.5, 600.0)
    interval = _seconds(raw, "interval", 1.0, 0.1, 60.0)
    max_duration = _seconds(raw, "max_duration", 3600.0, 1.0, 6 * 3600.0)
    if mode == "window" and interval > duration:
        raise ProbeParamError(f"interval {interval:g}s is longer than duration {duration:g}s")
    etcd_dir = raw.get("etcd_dir", "/var/lib/etcd")
    if not isinstance(etcd_dir, str) or (etcd_dir and not os.path.isabs(etcd_dir)):
        raise ProbeParamError(f"etcd_dir must be an absolute path or empty, not {etcd_dir!r}")
    return NodeParams(mode, duration, interval, max_duration, etcd_dir)


def _seconds(raw: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ProbeParamError(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def take_sample() -> tuple[float, ...]:
    """One row of COLUMNS (blocking: reads /proc; call it off the event loop)."""
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    own_cpu, own_rss = _own_tree()
    memory = psutil.virtual_memory()
    return (time.time(), total - idle, total, own_cpu, float(memory.total - memory.available), float(own_rss))


def _own_tree() -> tuple[float, int]:
    """CPU seconds (including reaped children) and resident bytes of this process and every
    process under it."""
    cpu = 0.0
    rss = 0
    try:
        root = psutil.Process()
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return cpu, rss
    for member in members:
        try:
            with member.oneshot():
                t = member.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += member.memory_info().rss
        except psutil.Error:
            continue  # exited meanwhile: its time moves to its parent's children_* once reaped
    return cpu, rss


class Sampler:
    """Samples every ``interval`` seconds until stopped or ``max_duration`` has passed."""

    def __init__(self, interval: float, max_duration: float) -> None:
        self.interval = interval
        self.max_duration = max_duration
        self.rows: list[tuple[float, ...]] = []
        self.missed = 0  # ticks skipped because a sample took longer than the interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.rows.append(await asyncio.to_thread(take_sample))
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="node-sampler")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        tick = 1
        while loop.time() - begun < self.max_duration:
            due = begun + tick * self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.rows.append(await asyncio.to_thread(take_sample))
            late = int((loop.time() - due) // self.interval)
            self.missed += late
            tick += 1 + late

    async def stop(self) -> dict[str, Any]:
        """Stop (idempotent), take a last sample, return the columns."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            self.rows.append(await asyncio.to_thread(take_sample))
        return self.columns()

    def columns(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval,
            "missed": self.missed,
            "columns": {name: [_round(row[i]) for row in self.rows] for i, name in enumerate(COLUMNS)},
        }


def _round(value: float) -> float:
    return round(value, 3)


class NodeProbe:
    name = "node"

    def __init__(self) -> None:
        # run id -> sampler started by a "start" job, until "collect" or the run's release
        self._samplers: dict[str, Sampler] = {}

    def parse(self, params: Mapping[str, Any]) -> NodeParams:
        return parse_params(params)

    def time_limit(self, params: NodeParams) -> float:
        if params.mode == "window":
            return params.duration + params.interval + FACTS_ALLOWANCE
        return FACTS_ALLOWANCE + params.interval

    async def run(self, params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
        if params.mode == "start":
            return await self._start(params, ctx)
        if params.mode == "collect":
            return await self._collect(params, ctx)
        sampler = Sampler(params.interval, params.duration)
        await sampler.start()
        try:
            facts = await asyncio.to_thread(node_facts, ctx.data_dir, params.etcd_dir)
            await asyncio.sleep(max(0.0, params.duration - (time.time() - sampler.rows[0][0])))
        finally:
            sampling = await sampler.stop()
        return {"schema": SCHEMA_VERSION, "mode": "window", "facts": facts, "sampling": sampling}

    async def _start(self, params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
        if ctx.run_id in self._samplers:
            raise ProbeParamError(f"node sampling already runs for run {ctx.run_id}")
        sampler = Sampler(params.interval, params.max_duration)
        await sampler.start()
        self._samplers[ctx.run_id] = sampler

        async def release() -> None:
            dropped = self._samplers.pop(ctx.run_id, None)
            if dropped is not None:
                await dropped.stop()

        ctx.cleanup.add(ctx.run_id, CLEANUP_NAME, release)
        return {"schema": SCHEMA_VERSION, "mode": "start", "interval_s": params.interval, "max_duration_s": params.max_duration}

    async def _collect(self, params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
        sampler = self._samplers.get(ctx.run_id)
        if sampler is None:
            raise ProbeParamError(f"no node sampling runs for run {ctx.run_id} (start it first)")
        sampling = await sampler.stop()
        await ctx.cleanup.release(ctx.run_id, CLEANUP_NAME)
        facts = await asyncio.to_thread(node_facts, ctx.data_dir, params.etcd_dir)
        return {"schema": SCHEMA_VERSION, "mode": "span", "facts": facts, "sampling": sampling}
