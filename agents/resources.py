"""What the agent itself consumed while a job ran, so the coordinator can refuse to trust a
measurement taken by a saturated agent.

``cpu_process_percent`` is the agent process's CPU time (user + system, all its threads, not
its children; time.process_time) over the wall time, in percent of ONE core; ``cpu_process_percent_max`` is the
highest value over SAMPLE_INTERVAL windows, so a saturated burst inside a long job is not
averaged away.  ``cpu_system_percent`` is the whole machine's busy share over all ``cpus``.
``loop_lag_max_ms`` is the largest delay of the event loop in waking the sampler; the sampler
wakes every TICK seconds and ``loop_ticks_late`` of its ``loop_ticks`` wake-ups came LATE_MS or
more late.  That share estimates how much of the job's time the loop was stalled, which is what
decides whether timestamps taken on this loop (RTT samples) carry scheduling delay in their tail:
a single stall touches a sample or two, a loop stalled a few per cent of the time moves a p99.

The agent's CPU cgroup (agents.cgroup) is read at start and stop: ``cpu_periods`` CFS periods of
the job, ``cpu_throttled_periods`` of them throttled, ``cpu_throttled_s`` throttled time, and
``cpu_quota_cores`` (None: no quota).  The agent's tools (fio, iperf3, etcd, the load workers) run
in the same cgroup, so a quota they exhaust shows here although ``cpu_process_percent`` counts
only the agent.  Absent when no cgroup with the cpu controller can be read.

What the rest of the host did meanwhile (steal, iowait, other processes' CPU, dirty pages and
writeback) comes from agents.host_context, as ``host_*`` fields.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from talbench.agents import cgroup
from talbench.agents.host_context import HostContext

SAMPLE_INTERVAL = 0.5  # CPU peak windows
TICK = 0.1  # loop-lag sampling
LATE_MS = 5.0


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float  # time.monotonic()
    process: float  # process CPU seconds (user + system)
    system_busy: float  # machine CPU seconds busy, summed over CPUs
    system_total: float  # machine CPU seconds, summed over CPUs


def _system_times() -> tuple[float, float]:
    t = psutil.cpu_times()
    total = sum(t)
    # On Linux guest time is already counted in user/nice.
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def snapshot() -> CpuSnapshot:
    # time.process_time() is this process's user + system time (all threads) with nanosecond
    # resolution; psutil.Process().cpu_times() counts in clock ticks (10 ms), too coarse for
    # short jobs.
    busy, total = _system_times()
    return CpuSnapshot(time.monotonic(), time.process_time(), busy, total)


def _process_percent(a: CpuSnapshot, b: CpuSnapshot) -> float:
    wall = b.wall - a.wall
    return 100.0 * (b.process - a.process) / wall if wall > 0 else 0.0


def _system_percent(a: CpuSnapshot, b: CpuSnapshot) -> float:
    total = b.system_total - a.system_total
    return 100.0 * (b.system_busy - a.system_busy) / total if total > 0 else 0.0


class CpuMeter:
    """Start with ``start()`` around a job, end with ``await stop()`` -> the resources dict."""

    def __init__(self, *, interval: float = SAMPLE_INTERVAL, tick: float = TICK, cgroup_root: Path = Path("/")) -> None:
        self._interval = interval
        self._cgroup_root = cgroup_root
        self._cgroup: cgroup.CpuCgroup | None = None
        self._cgroup_first: cgroup.CpuSample | None = None
        self._tick = min(tick, interval)
        self._first: CpuSnapshot | None = None
        self._peak_process = 0.0
        self._lag_max = 0.0
        self._ticks = 0
        self._late = 0
        self._task: asyncio.Task[None] | None = None
        self._host = HostContext()

    def start(self) -> None:
        self._host.start()
        self._cgroup = cgroup.locate(self._cgroup_root)
        self._cgroup_first = cgroup.sample(self._cgroup) if self._cgroup is not None else None
        self._first = snapshot()
        self._task = asyncio.get_running_loop().create_task(self._sample(self._first))

    async def _sample(self, previous: CpuSnapshot) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._tick
            await asyncio.sleep(self._tick)
            lag = loop.time() - due
            self._ticks += 1
            self._late += lag * 1000.0 >= LATE_MS
            self._lag_max = max(self._lag_max, lag)
            if time.monotonic() - previous.wall >= self._interval:
                current = snapshot()
                self._peak_process = max(self._peak_process, _process_percent(previous, current))
                previous = current
                self._host.sample()

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        last = snapshot()
        first = self._first or last
        mean = _process_percent(first, last)
        throttling = (
            cgroup.throttling(self._cgroup_first, cgroup.sample(self._cgroup))
            if self._cgroup is not None and self._cgroup_first is not None
            else {}
        )
        return {
            "cpu_process_percent": round(mean, 1),
            "cpu_process_percent_max": round(max(self._peak_process, mean), 1),
            "cpu_system_percent": round(_system_percent(first, last), 1),
            "cpus": psutil.cpu_count(logical=True) or 1,
            "wall_s": round(last.wall - first.wall, 3),
            "loop_lag_max_ms": round(self._lag_max * 1000.0, 1),
            "loop_ticks": self._ticks,
            "loop_ticks_late": self._late,
            "loop_late_ms": LATE_MS,
            **throttling,
            **self._host.stop(),
        }
