"""The CPU cgroup a process runs in: its CFS quota and how often the kernel throttled it.

Where the cpu controller lives is read, not guessed: ``/proc/<pid>/cgroup`` names the process's
cgroup per hierarchy and ``/proc/<pid>/mountinfo`` where each hierarchy is mounted.  A cgroup v1
hierarchy carrying ``cpu`` (``/sys/fs/cgroup/cpu`` or ``cpu,cpuacct``) wins; else the v2 mount
when its root lists ``cpu`` in ``cgroup.controllers`` (a hybrid host also mounts a v2 hierarchy
with no controller: its ``cpu.stat`` has no throttling fields).

A quota on an ancestor throttles the whole subtree but the kernel counts the throttling in the
ancestor's ``cpu.stat`` (a Kubernetes pod's cgroup above its container's), so every level from
the process's cgroup up to the mount's root is read (at most MAX_LEVELS).

Every function is bounded (a few small files) and never raises: what cannot be read is None.
Tests point ``root`` at a temporary tree laid out like ``/``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LEVELS = 32
MAX_READ = 65536


@dataclass(frozen=True)
class CpuCgroup:
    version: int  # 1 or 2
    levels: tuple[Path, ...]  # the process's cgroup directory first, then its ancestors to the mount root


@dataclass(frozen=True)
class CpuStat:
    periods: int  # CFS periods in which the group had a quota and runnable tasks
    throttled_periods: int
    throttled_s: float


@dataclass(frozen=True)
class CpuSample:
    """One reading of every level: stats (None where unreadable) and the tightest quota."""

    stats: tuple[CpuStat | None, ...]
    quota_cores: float | None


def _read(path: Path) -> str | None:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return f.read(MAX_READ)
    except (OSError, ValueError):
        return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount root, mount point, super options) of every cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((tail[0], _unescape(fields[3]), _unescape(fields[4]), set(tail[2].split(","))))
    return found


def _directory(root: Path, mount_root: str, mount_point: str, path: str) -> tuple[Path, Path]:
    """The cgroup's directory and the mount's directory, both under ``root``."""
    top = root / mount_point.lstrip("/")
    relative = path
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root.rstrip("/") + "/")):
        relative = path[len(mount_root.rstrip("/")) :]  # a subtree mounted without a cgroup namespace
    return top / relative.lstrip("/"), top


def _choose(view: Path, mountinfo: str, v1: dict[str, str], v2: str | None) -> tuple[int, Path, Path] | None:
    """(version, cgroup directory, mount directory) in the mount namespace seen at ``view``."""
    mounts = _mounts(mountinfo)
    if "cpu" in v1:
        for fstype, mount_root, point, options in mounts:
            if fstype == "cgroup" and "cpu" in options:
                return (1, *_directory(view, mount_root, point, v1["cpu"]))
    if v2 is not None:
        for fstype, mount_root, point, _options in mounts:
            if fstype == "cgroup2":
                directory, top = _directory(view, mount_root, point, v2)
                if "cpu" in (_read(top / "cgroup.controllers") or "").split():
                    return 2, directory, top
    return None


def locate(root: Path = Path("/"), pid: str = "self") -> CpuCgroup | None:
    """The cgroup that carries the cpu controller for ``pid``, or None.  None also when the
    process's mount namespace has no cgroup mount: ``ip netns exec`` (the process lab) mounts a
    fresh /sys for the namespace without them."""
    own = _read(root / "proc" / pid / "cgroup")
    mountinfo = _read(root / "proc" / pid / "mountinfo")
    if own is None or mountinfo is None:
        return None
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        for controller in parts[1].split(","):
            v1[controller] = parts[2]
    chosen = _choose(root, mountinfo, v1, v2)
    if chosen is None:
        return None
    version, directory, top = chosen
    if not _is_dir(directory):
        directory = top  # the path is outside this mount's view: the mount root is what we can see
    levels = [directory]
    while levels[-1] != top and top in levels[-1].parents and len(levels) < MAX_LEVELS:
        levels.append(levels[-1].parent)
    return CpuCgroup(version, tuple(levels))


def _keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def read_stat(directory: Path, version: int) -> CpuStat | None:
    text = _read(directory / "cpu.stat")
    if text is None:
        return None
    values = _keyed(text)
    if version == 1:
        if "nr_periods" not in values:
            return None
        throttled_s = values.get("throttled_time", 0) / 1e9
    else:
        if "usage_usec" not in values and "nr_periods" not in values:
            return None
        throttled_s = values.get("throttled_usec", 0) / 1e6  # no nr_periods: no quota at this level
    return CpuStat(values.get("nr_periods", 0), values.get("nr_throttled", 0), throttled_s)


def read_quota(directory: Path, version: int) -> float | None:
    """The level's CFS quota in cores, None when unlimited or unreadable."""
    try:
        if version == 1:
            quota = int((_read(directory / "cpu.cfs_quota_us") or "-1").strip())
            period = int((_read(directory / "cpu.cfs_period_us") or "0").strip())
        else:
            fields = (_read(directory / "cpu.max") or "max").split()
            if fields[0] == "max" or len(fields) < 2:
                return None
            quota, period = int(fields[0]), int(fields[1])
    except (ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def sample(group: CpuCgroup) -> CpuSample:
    stats = tuple(read_stat(level, group.version) for level in group.levels)
    quotas = [q for q in (read_quota(level, group.version) for level in group.levels) if q is not None]
    return CpuSample(stats, min(quotas) if quotas else None)


def quota_cores(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, in cores."""
    group = locate(root)
    return sample(group).quota_cores if group is not None else None


def throttling(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """The throttling between two samples, as the job's resource fields; {} when no level could
    be read both times.  The level reported is the one throttled most (the one whose quota bit);
    among unthrottled levels, one that counted periods (it has a quota)."""
    best: tuple[int, int, float] | None = None
    for a, b in zip(before.stats, after.stats, strict=False):
        if a is None or b is None:
            continue
        delta = (
            max(0, b.throttled_periods - a.throttled_periods),
            max(0, b.periods - a.periods),
            max(0.0, b.throttled_s - a.throttled_s),
        )
        if best is None or delta[:2] > best[:2]:
            best = delta
    if best is None:
        return {}
    quota = after.quota_cores
    return {
        "cpu_throttled_periods": best[0],
        "cpu_periods": best[1],
        "cpu_throttled_s": round(best[2], 3),
        "cpu_quota_cores": round(quota, 3) if quota is not None and math.isfinite(quota) else None,
    }
