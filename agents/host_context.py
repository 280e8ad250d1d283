"""What the host was doing besides the job while the job ran: the context every figure is read in.

    host_steal_percent        CPU time the hypervisor gave to others (``steal``), of all CPUs
    host_iowait_percent       CPU time idle with I/O outstanding, of all CPUs
    host_other_cpu_percent    CPU busy with anything but this agent and its processes (fio,
                              iperf3, etcd, the load workers), of all CPUs
    host_agent_cpu_percent    CPU used by this agent and its processes, of all CPUs
    host_dirty_max_bytes      the most dirty page cache seen (/proc/meminfo Dirty), and
    host_writeback_max_bytes  the most being written back at once (Writeback): other writers
                              competing with an fdatasync for the disk

A verdict is only as good as this context: the coordinator shows it, and measures once more a
fail that was measured on a busy host (bench/context.py).  CPU figures are deltas of
/proc/stat over the job; the memory figures are the peaks of samples taken by the agent's
resource sampler (agents.resources).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class HostTimes:
    total: float  # CPU seconds, summed over CPUs (guest time is inside user/nice on Linux)
    busy: float  # total less idle and iowait
    steal: float
    iowait: float
    own: float  # this process, the children it reaped, and its live descendants


def _own_cpu_seconds() -> float:
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                cpu = child.cpu_times()
            except psutil.Error:
                continue  # gone meanwhile: counted once reaped
            own += cpu.user + cpu.system
    except psutil.Error:
        pass
    return own


def host_times() -> HostTimes:
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    iowait = getattr(t, "iowait", 0.0)
    return HostTimes(total, total - t.idle - iowait, getattr(t, "steal", 0.0), iowait, _own_cpu_seconds())


def meminfo(path: Path = MEMINFO) -> tuple[int, int] | None:
    """(Dirty, Writeback) in bytes, None where /proc/meminfo cannot be read."""
    found: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("Dirty", "Writeback"):
                found[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if len(found) != 2:
        return None
    return found["Dirty"], found["Writeback"]


class HostContext:
    """``start()``, ``sample()`` now and then (memory peaks), ``stop()`` -> the fields above."""

    def __init__(self, meminfo_path: Path = MEMINFO) -> None:
        self._meminfo_path = meminfo_path
        self._first: HostTimes | None = None
        self._dirty_max: int | None = None
        self._writeback_max: int | None = None

    def start(self) -> None:
        self._first = host_times()
        self.sample()

    def sample(self) -> None:
        found = meminfo(self._meminfo_path)
        if found is not None:
            dirty, writeback = found
            self._dirty_max = max(dirty, self._dirty_max or 0)
            self._writeback_max = max(writeback, self._writeback_max or 0)

    def stop(self) -> dict[str, Any]:
        self.sample()
        last = host_times()
        first = self._first or last
        total = last.total - first.total
        context: dict[str, Any] = {}
        if total > 0:
            busy, steal = last.busy - first.busy, last.steal - first.steal
            own = last.own - first.own
            other = max(0.0, busy - steal - own)
            context = {
                "host_agent_cpu_percent": round(100.0 * own / total, 1),
                "host_steal_percent": round(100.0 * steal / total, 1),
                "host_iowait_percent": round(100.0 * (last.iowait - first.iowait) / total, 1),
                "host_other_cpu_percent": round(100.0 * other / total, 1),
            }
        if self._dirty_max is not None:
            context["host_dirty_max_bytes"] = self._dirty_max
            context["host_writeback_max_bytes"] = self._writeback_max
        return context
