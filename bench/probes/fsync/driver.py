"""fsync probe, coordinator side: fio's etcd recipe on every node that owes a result, one node
at a time by default (nodes may share a disk, as lab nodes do), and the metrics that judge
fdatasync latency and the kind of disk.

Latency figures are re-derived from fio's histogram (``json+`` bins) with fio's own percentile
rule, so they agree with what fio prints for the same run; fio's table stays in the raw result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.agents.params import wire
from talbench.agents.probes.fsync import probe as fsync_agent
from talbench.agents.probes.fsync.probe import FsyncSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.units import Dimension, format_value

MiB = 1 << 20
MIN_SYNCS = 100  # fewer fdatasyncs than this: a p99 is not a p99
COORDINATOR_SLACK = 15.0  # seconds beyond the agent's own time limit
QUICK_SIZE = 4 * MiB  # quick: about 1800 fdatasyncs, enough for p99.9
QUICK_TIME_LIMIT = 60.0


def deadline(settings: FsyncSettings) -> float:
    """How long the coordinator waits for one agent's job: the agent's own limit plus slack."""
    return fsync_agent.time_limit(settings) + COORDINATOR_SLACK


class FsyncDriver(DeclaredDriver[FsyncSettings]):
    name = "fsync"
    declaration = fsync_agent.PROBE
    settings_model = FsyncSettings

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> FsyncSettings:
        settings: FsyncSettings = super().settings(raw, quick=quick)
        if settings.expected_writes < MIN_SYNCS:
            raise ScenarioError(
                f"size {settings.size} / block_size {settings.block_size} gives fewer than {MIN_SYNCS} fdatasyncs"
            )
        return settings

    def quicken(self, settings: FsyncSettings) -> FsyncSettings:
        # Demos and tests: a smaller file (still enough fdatasyncs for a p99.9), a shorter limit.
        # Not re-validated here: ``settings`` checks the fdatasyncs that are left.
        return settings.model_copy(
            update={"size": min(settings.size, QUICK_SIZE), "time_limit": min(settings.time_limit, QUICK_TIME_LIMIT)}
        )

    def cost(self, keys: frozenset[ResultKey], settings: FsyncSettings, nodes: Sequence[Node]) -> ProbeCost:
        """fio on ``parallel`` nodes at a time, each at most its time limit; the test file on disk."""
        measured = sorted({key.node for key in keys})
        waves = -(-len(measured) // settings.parallel)
        return ProbeCost(
            self.name,
            duration_s=waves * fsync_agent.time_limit(settings),
            disk_bytes=dict.fromkeys(measured, settings.size),
            note=f"{settings.expected_writes} writes of {settings.block_size} B + fdatasync per node",
        )

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: FsyncSettings, progress: Progress
    ) -> list[Measurement]:
        nodes = sorted({key.node for key in keys if key.probe == self.name})
        gate = asyncio.Semaphore(settings.parallel)
        done = 0
        progress.update(
            "fsync",
            done=0,
            total=len(nodes),
            note=f"fio etcd recipe, {settings.size // MiB} MiB, {settings.parallel} at a time",
        )

        async def one(node: str) -> Measurement:
            nonlocal done
            async with gate:
                progress.update("fsync", done=done, total=len(nodes), note=f"{node} running")
                outcome = await fleet.agents[node].run_job(
                    "fsync", wire(settings), fleet.run_id, deadline=deadline(settings)
                )
            done += 1
            progress.update("fsync", done=done, total=len(nodes), note=f"{node} done")
            return outcome.measurement(ResultKey("fsync", node))

        return list(await asyncio.gather(*(one(node) for node in nodes)))

    def metrics(self) -> Sequence[Metric]:
        return FSYNC_METRICS


# ---- figures from fio's histogram ------------------------------------------------------------


def histogram_percentile(bins: Mapping[Any, int], q: float) -> float:
    """fio's percentile rule over its histogram (value -> count): the first bucket value at which
    the running count reaches ``q`` percent of all samples.  Buckets of several results can be
    added before (they are counts), percentiles never."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted((float(value), int(count)) for value, count in bins.items() if int(count) > 0)
    total = sum(count for _, count in ordered)
    if not total:
        raise ValueError("percentile of an empty histogram")
    target = q / 100.0 * total
    running = 0
    for value, count in ordered:
        running += count
        if running >= target:
            return value
    return ordered[-1][0]


def merge_bins(blocks: Sequence[Mapping[Any, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for block in blocks:
        for value, count in block.items():
            merged[int(value)] = merged.get(int(value), 0) + int(count)
    return merged


def _sync_block(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    sync = data.get("sync")
    return sync.get("lat") if isinstance(sync, Mapping) else None


def untrusted(data: Mapping[str, Any]) -> str | None:
    """Why a fsync result cannot be judged (None when it can).  A recipe cut short by fio's time
    limit is judged on the fdatasyncs it did, when there are enough of them: a disk too slow to
    finish in time has plenty of slow samples, and calling that "not judged" would hide a fail."""
    block = _sync_block(data)
    stopped = None if data.get("complete") else str(data.get("stopped") or "fio did not complete the recipe")
    if not block:
        return stopped or "fio reported no fdatasync latency"
    count = int(block.get("count") or 0)
    if count < MIN_SYNCS:
        return f"too few fdatasyncs ({count} < {MIN_SYNCS})" + (f": {stopped}" if stopped else "")
    if data.get("etcd_same_disk") is False:
        measured = _disk_names(data.get("device"))
        etcd = data.get("etcd_device") or {}
        return f"measured on {measured}, but etcd's data ({etcd.get('path', '?')}) is on {_disk_names(etcd)}"
    return None


def _disk_names(device: Any) -> str:
    disks = (device or {}).get("disks") or []
    return ", ".join(str(d.get("name")) for d in disks) or "an unknown device"


def sync_percentile(data: Mapping[str, Any], q: float) -> float | None:
    """fdatasync latency percentile in seconds: from the histogram, else fio's table."""
    block = _sync_block(data)
    if not block:
        return None
    if block.get("bins_ns"):
        return histogram_percentile(block["bins_ns"], q) / 1e9
    table = block.get("percentiles_ns") or {}
    value = table.get(f"{q:g}")
    return None if value is None else float(value) / 1e9


def _latency_metric(name: str, q: float | None, description: str) -> Metric:
    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        data = measurements[0].data
        block = _sync_block(data) or {}
        count = int(block.get("count") or 0)
        if q is None:
            value = block["max_ns"] / 1e9 if block.get("max_ns") is not None else None
        else:
            value = sync_percentile(data, q)
        detail = _latency_detail(data, count)
        reason = untrusted(data)
        if reason:
            return Observation(value, count, invalid=reason, detail=detail)
        return Observation(value, count, detail=detail, extra={"device": _device_line(data.get("device"))})

    return Metric(name, "fsync", SubjectKind.NODE, Dimension.DURATION, True, observe, description)


def _latency_detail(data: Mapping[str, Any], count: int) -> str:
    parts = [f"{count} fdatasyncs"]
    if not data.get("complete") and data.get("stopped"):
        parts[0] += f" (cut short: {data['stopped']})"
    p50 = sync_percentile(data, 50) if _sync_block(data) else None
    if p50 is not None:
        parts.append(f"p50 {format_value(p50, Dimension.DURATION)}")
    write = data.get("write") or {}
    if write.get("iops"):
        parts.append(f"{write['iops']:.0f} IOPS")
    parts.append(_device_line(data.get("device")))
    if (data.get("params") or {}).get("size"):
        parts.append(f"{data['params']['size'] / MiB:g} MiB x {data['params'].get('block_size')} B")
    return ", ".join(p for p in parts if p)


def _device_line(device: Any) -> str:
    """``vda (virtual, virtio-blk)``."""
    if not isinstance(device, Mapping):
        return ""
    disks = device.get("disks") or []
    if not disks:
        return device.get("note") or "no block device"
    shown = []
    for disk in disks:
        traits = [str(disk.get("media"))]
        if disk.get("transport") and disk.get("transport") != "pcie":
            traits.append(f"over {disk['transport']}")
        if disk.get("model"):
            traits.append(str(disk["model"]))
        if disk.get("media") == "virtual" and disk.get("rotational"):
            traits.append("claims rotational")
        shown.append(f"{disk.get('name')} ({', '.join(traits)})")
    return " + ".join(shown)


LOCAL_TRANSPORTS = (None, "pcie")


def _observe_nvme(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    """1 when the disk under the scratch directory is locally attached NVMe, else 0 (also when
    it cannot be told: the warn says so)."""
    data = measurements[0].data
    device = data.get("device") or {}
    disks = device.get("disks") or []
    detail = _device_line(device)
    filesystem = device.get("filesystem") or {}
    if filesystem.get("size_bytes"):
        detail += f"; filesystem {format_value(filesystem['size_bytes'], Dimension.BYTES)}, {format_value(filesystem.get('free_bytes', 0), Dimension.BYTES)} free"
    if data.get("etcd_same_disk") is False:
        detail += f"; etcd's data is on {_disk_names(data.get('etcd_device'))}"
    if not disks:
        return Observation(0.0, 0, detail=f"cannot tell: {detail}")
    local_nvme = all(d.get("nvme") and d.get("transport") in LOCAL_TRANSPORTS for d in disks)
    return Observation(1.0 if local_nvme else 0.0, len(disks), detail=detail)


def _observe_solid_state(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    """1 when every disk under the scratch directory is NVMe or SSD; 0 for spinning, virtual
    (the host's disk is unknown) or unknown."""
    device = measurements[0].data.get("device") or {}
    disks = device.get("disks") or []
    detail = _device_line(device)
    if not disks:
        return Observation(0.0, 0, detail=f"cannot tell: {detail}")
    solid = all(d.get("media") in ("nvme", "ssd") for d in disks)
    return Observation(1.0 if solid else 0.0, len(disks), detail=detail)


def _observe_write_iops(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = measurements[0].data
    write = data.get("write") or {}
    reason = untrusted(data)
    value = float(write["iops"]) if write.get("iops") is not None else None
    return Observation(value, int(write.get("ios") or 0), invalid=reason, detail="write+fdatasync pairs per second")


def _observe_write_p99(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = measurements[0].data
    clat = (data.get("write") or {}).get("clat") or {}
    if not clat.get("bins_ns"):
        return Observation(None, 0, invalid=untrusted(data) or "fio reported no write latency")
    value = histogram_percentile(clat["bins_ns"], 99) / 1e9
    return Observation(
        value, int(clat.get("count") or 0), invalid=untrusted(data), detail="write(2) completion, before fdatasync"
    )


FSYNC_METRICS: tuple[Metric, ...] = (
    _latency_metric("fsync.p50", 50, "median fdatasync latency (fio etcd recipe)"),
    _latency_metric("fsync.p90", 90, "90th percentile fdatasync latency"),
    _latency_metric("fsync.p99", 99, "99th percentile fdatasync latency (fio etcd recipe); etcd wants < 10 ms"),
    _latency_metric("fsync.p999", 99.9, "99.9th percentile fdatasync latency"),
    _latency_metric("fsync.max", None, "slowest fdatasync"),
    Metric(
        "fsync.write_p99",
        "fsync",
        SubjectKind.NODE,
        Dimension.DURATION,
        True,
        _observe_write_p99,
        "99th percentile write(2) completion latency",
    ),
    Metric(
        "fsync.iops",
        "fsync",
        SubjectKind.NODE,
        Dimension.RATE,
        False,
        _observe_write_iops,
        "sequential 2300-byte writes with fdatasync per second",
    ),
    Metric(
        "fsync.solid_state",
        "fsync",
        SubjectKind.NODE,
        Dimension.COUNT,
        False,
        _observe_solid_state,
        "1 when the disk under the data directory is NVMe or SSD, 0 otherwise or unknown",
        timed=False,
    ),
    Metric(
        "fsync.nvme",
        "fsync",
        SubjectKind.NODE,
        Dimension.COUNT,
        False,
        _observe_nvme,
        "1 when the disk under etcd's filesystem is locally attached NVMe, 0 otherwise or unknown",
        timed=False,
    ),
)


DRIVER = FsyncDriver()
