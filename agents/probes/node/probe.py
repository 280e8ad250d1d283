"""node probe: the node's size (cores, memory, etcd's filesystem) and its CPU and memory
utilisation sampled every ``interval`` seconds over a span of time, as raw counters.

Two ways to span time:

* ``mode: window``: one job samples for ``duration`` seconds and returns facts and samples.
* ``mode: start`` then ``mode: collect``: the first job starts a sampler for the run and returns
  at once; the sampler keeps going (bounded by ``max_duration``) while the run's other probes
  measure; the second job stops it and returns facts and samples.  The sampler is registered in
  the run's CleanupRegistry, so a run that never collects still stops it.  Its samples go to a
  journal file in the node's data directory (``talbench-node-<run id>-....jsonl``) that the
  collect job reads and removes: nothing of a run is kept in the agent process but the sampler the
  registry holds.

Samples are cumulative counters (columns of equal length): machine CPU busy and total seconds
(summed over CPUs), the CPU seconds of the agent's own process tree (fio, etcd, iperf3 it
started), memory in use (total - available) and the tree's resident memory.  The coordinator
computes utilisation from counter differences, so the figure covers the whole span, and can
subtract talbench's own load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Literal, TextIO

import psutil
from pydantic import model_validator

from talbench.agents import devices
from talbench.agents.facts import node_facts
from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration, ProbeParamError

SCHEMA_VERSION = 1
CLEANUP_NAME = "node-sampler"
COLUMNS = ("t", "cpu_busy_s", "cpu_total_s", "own_cpu_s", "mem_used_bytes", "own_rss_bytes")
FACTS_ALLOWANCE = 15.0  # seconds for facts (tool versions, device resolution)
JOURNAL_PREFIX = "talbench-node-"


class NodeSettings(Params):
    """The scenario's ``probes.node`` block."""

    duration: float = param(
        10.0,
        ge=0.5,
        le=600.0,
        unit=SECONDS,
        help="utilisation window when run alone (otherwise sampled through the whole run)",
    )
    interval: float = param(1.0, ge=0.1, le=60.0, unit=SECONDS, help="seconds between samples")
    max_duration: float = param(
        7200.0,
        ge=1.0,
        le=6 * 3600.0,
        unit=SECONDS,
        help="sampling through a run: the agents stop by themselves after this",
    )
    etcd_dir: str = devices.etcd_dir_param()


class NodeParams(NodeSettings):
    """One agent's job: the settings and which part of the sampling it is (the driver says)."""

    mode: Literal["window", "start", "collect"] = param(
        "window",
        help="window: sample for duration and return; start: sample until collect (or max_duration); collect: stop, return",
    )

    @model_validator(mode="after")
    def _window_holds_an_interval(self) -> NodeParams:
        if self.mode == "window" and self.interval > self.duration:
            raise ValueError(f"interval {self.interval:g}s is longer than duration {self.duration:g}s")
        return self


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
    """Samples every ``interval`` seconds until stopped or ``max_duration`` has passed; with a
    ``journal`` it also writes each sample there (one JSON line), between a header and a footer."""

    def __init__(self, interval: float, max_duration: float, journal: TextIO | None = None) -> None:
        self.interval = interval
        self.max_duration = max_duration
        self.rows: list[tuple[float, ...]] = []
        self.missed = 0  # ticks skipped because a sample took longer than the interval
        self._journal = journal
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._write({"interval_s": self.interval})
        self._record(await asyncio.to_thread(take_sample))
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="node-sampler")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        tick = 1
        while loop.time() - begun < self.max_duration:
            due = begun + tick * self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._record(await asyncio.to_thread(take_sample))
            late = int((loop.time() - due) // self.interval)
            self.missed += late
            tick += 1 + late

    async def stop(self) -> dict[str, Any]:
        """Stop (idempotent), take a last sample, close the journal, return the columns."""
        try:
            if self._task is not None:
                task, self._task = self._task, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._record(await asyncio.to_thread(take_sample))
                self._write({"missed": self.missed})
        finally:
            self.close()
        return columns_of(self.interval, self.missed, self.rows)

    def close(self) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            with contextlib.suppress(OSError):
                journal.close()

    def _record(self, row: tuple[float, ...]) -> None:
        self.rows.append(row)
        self._write(list(row))

    def _write(self, item: Any) -> None:
        """One journal line, written on the event loop (so a cancelled sample is never half
        written); a journal that cannot be written is dropped and then lacks its footer."""
        if self._journal is None:
            return
        try:
            self._journal.write(json.dumps(item) + "\n")
            self._journal.flush()
        except (OSError, ValueError):
            self.close()


def columns_of(interval: float, missed: int, rows: list[tuple[float, ...]]) -> dict[str, Any]:
    return {
        "interval_s": interval,
        "missed": missed,
        "columns": {name: [round(row[i], 3) for row in rows] for i, name in enumerate(COLUMNS)},
    }


def journal_path(ctx: ProbeContext) -> Path:
    """``<data dir>/talbench-node-<run id>-<hash>.jsonl`` (only characters shells take literally)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ctx.run_id)[:64] or "run"
    digest = hashlib.sha256(ctx.run_id.encode()).hexdigest()[:8]
    return Path(ctx.data_dir) / f"{JOURNAL_PREFIX}{safe}-{digest}.jsonl"


def read_journal(path: Path) -> dict[str, Any]:
    """The columns a stopped sampler wrote to ``path``; RuntimeError when it is damaged or was
    not finished (a full disk)."""
    interval: float | None = None
    missed: int | None = None
    rows: list[tuple[float, ...]] = []
    try:
        with path.open(encoding="utf-8") as journal:
            for line in journal:
                item = json.loads(line)
                if isinstance(item, list) and len(item) == len(COLUMNS):
                    rows.append(tuple(float(value) for value in item))
                elif isinstance(item, dict) and "interval_s" in item:
                    interval = float(item["interval_s"])
                elif isinstance(item, dict) and "missed" in item:
                    missed = int(item["missed"])
                else:
                    raise ValueError(f"unexpected line {line[:60]!r}")
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the node sampling journal {path}: {exc}") from exc
    if interval is None or missed is None:
        raise RuntimeError(f"the node sampling journal {path} is incomplete (could the sampler write it? disk full?)")
    return columns_of(interval, missed, rows)


def time_limit(params: NodeParams) -> float:
    if params.mode == "window":
        return params.duration + params.interval + FACTS_ALLOWANCE
    return FACTS_ALLOWANCE + params.interval


async def measure(params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
    if params.mode == "start":
        return await _start(params, ctx)
    if params.mode == "collect":
        return await _collect(params, ctx)
    sampler = Sampler(params.interval, params.duration)
    await sampler.start()
    # The facts are gathered meanwhile; however long they take, the window is ``duration``.
    facts = asyncio.ensure_future(asyncio.to_thread(node_facts, ctx.data_dir, params.etcd_dir))
    try:
        await asyncio.sleep(max(0.0, params.duration - (time.time() - sampler.rows[0][0])))
        sampling = await sampler.stop()
        return {"schema": SCHEMA_VERSION, "mode": "window", "facts": await facts, "sampling": sampling}
    finally:
        await sampler.stop()  # idempotent: here for a cancelled job
        facts.cancel()


async def _start(params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
    # No await between this check and ``cleanup.add``: of two starts at once, one is refused.
    if CLEANUP_NAME in ctx.cleanup.names(ctx.run_id):
        raise ProbeParamError(f"node sampling already runs for run {ctx.run_id}")
    path = journal_path(ctx)
    try:
        journal = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"cannot write the node sampling journal in {ctx.data_dir}: {exc.strerror or exc}") from exc
    sampler = Sampler(params.interval, params.max_duration, journal)

    async def release() -> None:
        try:
            await sampler.stop()
        finally:
            path.unlink(missing_ok=True)  # a collect has moved it aside first: then this is a no-op

    ctx.cleanup.add(ctx.run_id, CLEANUP_NAME, release)
    try:
        await sampler.start()
    except BaseException:
        await asyncio.shield(ctx.cleanup.release(ctx.run_id, CLEANUP_NAME))
        raise
    return {
        "schema": SCHEMA_VERSION,
        "mode": "start",
        "interval_s": params.interval,
        "max_duration_s": params.max_duration,
    }


async def _collect(params: NodeParams, ctx: ProbeContext) -> dict[str, Any]:
    if CLEANUP_NAME not in ctx.cleanup.names(ctx.run_id):
        raise ProbeParamError(f"no node sampling runs for run {ctx.run_id} (start it first)")
    path = journal_path(ctx)
    taken = path.with_name(path.name + ".collected")
    try:
        # Moved aside, the journal outlives the release below, which stops the sampler (its last
        # sample and footer still reach the open file) and removes whatever is at ``path``.
        os.replace(path, taken)
    except OSError as exc:
        await ctx.cleanup.release(ctx.run_id, CLEANUP_NAME)
        raise RuntimeError(f"the node sampling journal {path} is gone: {exc.strerror or exc}") from exc
    try:
        await ctx.cleanup.release(ctx.run_id, CLEANUP_NAME)
        sampling = await asyncio.to_thread(read_journal, taken)
    finally:
        taken.unlink(missing_ok=True)
    facts = await asyncio.to_thread(node_facts, ctx.data_dir, params.etcd_dir)
    return {"schema": SCHEMA_VERSION, "mode": "span", "facts": facts, "sampling": sampling}


JOB: AgentJob[NodeParams] = AgentJob("node", NodeParams, measure, time_limit)

PROBE = ProbeDeclaration(
    name="node",
    summary="the node's size (cores, memory, etcd's filesystem) and its CPU and memory utilisation over time",
    settings=NodeSettings,
    jobs=(JOB,),
)
