"""fsync probe: fdatasync latency of the disk that holds (or will hold) etcd's data, with fio.

The etcd recipe (etcd FAQ / IBM's fio guidance): ``--rw=write --ioengine=sync --fdatasync=1
--size=22m --bs=2300``: sequential 2300-byte appends, each followed by fdatasync, like etcd's
write-ahead log.  It runs in a scratch directory named with the run id under the node's data
directory, which is removed whatever happens.  The result keeps fio's percentile tables and its
latency histograms (``json+`` bins) so the coordinator re-derives every figure itself.

Bounds: fio's ``--runtime`` stops it at the time limit (the result then says ``complete: false``
and the coordinator marks it invalid); if fio does not stop by itself it is killed a little later.
The probe refuses to start when the filesystem has less free space than the test file plus a
reserve, so it never fills the disk etcd lives on.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from talbench.agents import devices
from talbench.agents.fio import FioError, fio_command, fio_version, job_figures, load_json, failure_message, run_fio
from talbench.agents.probe import ProbeContext, ProbeParamError

SCHEMA_VERSION = 1
MiB = 1 << 20
GiB = 1 << 30

DEFAULT_SIZE = 22 * MiB  # the etcd recipe
DEFAULT_BLOCK_SIZE = 2300  # about one etcd WAL entry
DEFAULT_TIME_LIMIT = 120.0  # seconds of fio --runtime
MAX_TIME_LIMIT = 600.0  # with the grace below, well inside the agent's 900 s job limit
DEFAULT_RESERVE = 256 * MiB  # free space that must remain beside the test file
DEFAULT_ETCD_DIR = "/var/lib/etcd"

HARD_GRACE = 10.0  # seconds after --runtime before fio is killed
SETUP_ALLOWANCE = 15.0  # fio --version, device resolution, clean-up
SCRATCH_PREFIX = "talbench-fsync-"
DATA_FILE = "etcd-wal.fio"


class ScratchError(RuntimeError):
    """The scratch directory cannot be used (missing, unwritable, too little free space)."""


@dataclass(frozen=True)
class FsyncParams:
    size: int = DEFAULT_SIZE  # bytes written
    block_size: int = DEFAULT_BLOCK_SIZE  # bytes per write (each followed by fdatasync)
    time_limit: float = DEFAULT_TIME_LIMIT  # seconds; fio stops there (result incomplete)
    reserve: int = DEFAULT_RESERVE  # bytes that must stay free beside the test file
    etcd_dir: str = DEFAULT_ETCD_DIR  # compared with the scratch dir's disk when visible; "" skips

    @property
    def expected_writes(self) -> int:
        return self.size // self.block_size


def parse_params(raw: Mapping[str, Any]) -> FsyncParams:
    known = set(FsyncParams.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ProbeParamError(f"unknown fsync parameter(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    size = _int(raw, "size", DEFAULT_SIZE, 64 * 1024, 4 * GiB)
    block_size = _int(raw, "block_size", DEFAULT_BLOCK_SIZE, 512, 16 * MiB)
    if block_size > size:
        raise ProbeParamError(f"block_size {block_size} is larger than size {size}")
    time_limit = raw.get("time_limit", DEFAULT_TIME_LIMIT)
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not 1 <= time_limit <= MAX_TIME_LIMIT:
        raise ProbeParamError(f"time_limit must be a number of seconds between 1 and {MAX_TIME_LIMIT:g}, not {time_limit!r}")
    reserve = _int(raw, "reserve", DEFAULT_RESERVE, 0, 1 << 50)
    etcd_dir = raw.get("etcd_dir", DEFAULT_ETCD_DIR)
    if not isinstance(etcd_dir, str) or (etcd_dir and not os.path.isabs(etcd_dir)):
        raise ProbeParamError(f"etcd_dir must be an absolute path or empty, not {etcd_dir!r}")
    return FsyncParams(size, block_size, float(time_limit), reserve, etcd_dir)


def _int(raw: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProbeParamError(f"{name} must be an integer number of bytes between {low} and {high}, not {value!r}")
    return value


def recipe_args(params: FsyncParams, data_file: Path) -> list[str]:
    """fio's command line: the etcd recipe plus a bounded runtime and JSON (with histograms)."""
    return [
        "--name=talbench-fsync",
        f"--filename={data_file}",
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        f"--size={params.size}",
        f"--bs={params.block_size}",
        f"--runtime={math.ceil(params.time_limit)}s",
        "--output-format=json+",
    ]


def scratch_name(run_id: str) -> str:
    """``talbench-fsync-<run id>-<random>`` (only characters fio and shells take literally)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:64] or "run"
    return f"{SCRATCH_PREFIX}{safe}-{secrets.token_hex(4)}"


class FsyncProbe:
    name = "fsync"

    def __init__(self, fio: str = "fio") -> None:
        self._fio = fio  # fio binary (name on PATH or path)

    def parse(self, params: Mapping[str, Any]) -> FsyncParams:
        return parse_params(params)

    def time_limit(self, params: FsyncParams) -> float:
        return params.time_limit + HARD_GRACE + SETUP_ALLOWANCE

    async def run(self, params: FsyncParams, ctx: ProbeContext) -> dict[str, Any]:
        fio = fio_command(self._fio)  # ProbeUnavailable with the install hint
        version = await fio_version(fio)
        base = Path(ctx.data_dir)
        free_before = _check_space(base, params)
        scratch = base / scratch_name(ctx.run_id)
        try:
            try:
                scratch.mkdir(mode=0o700)
            except OSError as exc:
                raise ScratchError(f"cannot create scratch directory in {base}: {exc.strerror or exc}") from exc
            device = devices.describe_path(scratch)
            etcd = _etcd_device(params.etcd_dir)
            args = recipe_args(params, scratch / DATA_FILE)
            outcome = await run_fio(fio, args, hard_timeout=params.time_limit + HARD_GRACE, cwd=str(scratch))
            result: dict[str, Any] = {
                "schema": SCHEMA_VERSION,
                "params": asdict(params),
                "command": ["fio", *args],
                "fio_version": version,
                "directory": str(base),
                "free_before_bytes": free_before,
                "expected_writes": params.expected_writes,
                "device": device,
                "etcd_device": etcd,
                "etcd_same_disk": devices.same_disks(device, etcd) if etcd else None,
            }
            if outcome.killed:
                return {
                    **result,
                    "complete": False,
                    "stopped": f"fio did not stop at its {params.time_limit:g}s runtime and was killed "
                    f"{HARD_GRACE:g}s later (disk stalled?)",
                    "write": None,
                    "sync": None,
                    "summary": None,
                }
            if outcome.exit_code != 0:
                raise FioError(failure_message(outcome))
            figures = job_figures(load_json(outcome.stdout))
            if figures["error"]:
                raise FioError(f"fio reported error {figures['error']}: {os.strerror(figures['error'])}")
            complete = figures["write"]["ios"] >= params.expected_writes
            return {
                **result,
                "fio_version": figures["fio_version"] or version,
                "complete": complete,
                "stopped": None
                if complete
                else f"fio stopped at its {params.time_limit:g}s time limit after "
                f"{figures['write']['ios']} of {params.expected_writes} writes",
                "runtime_ms": figures["runtime_ms"],
                "write": figures["write"],
                "sync": figures["sync"],
                "summary": summarise(figures),
            }
        finally:
            _remove(scratch)


def _check_space(base: Path, params: FsyncParams) -> int:
    if not base.is_dir():
        raise ScratchError(f"data directory {base} does not exist")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ScratchError(f"data directory {base} is not writable")
    try:
        free = devices.filesystem_usage(base)["free_bytes"]
    except OSError as exc:
        raise ScratchError(f"cannot read free space of {base}: {exc.strerror or exc}") from exc
    needed = params.size + params.reserve
    if free < needed:
        raise ScratchError(
            f"not enough free space in {base}: {_mib(free)} free, the test needs {_mib(params.size)} "
            f"plus {_mib(params.reserve)} kept free"
        )
    return free


def _etcd_device(etcd_dir: str) -> dict[str, Any] | None:
    if not etcd_dir or not os.path.isdir(etcd_dir):
        return None
    try:
        return devices.describe_path(etcd_dir)
    except OSError:
        return None


def _remove(scratch: Path) -> None:
    """Remove the scratch directory; a second pass catches files fio wrote while dying."""
    for _ in range(2):
        shutil.rmtree(scratch, ignore_errors=True)
        if not scratch.exists():
            return


def _mib(value: int) -> str:
    return f"{value / MiB:.1f} MiB"


def summarise(figures: Mapping[str, Any]) -> dict[str, Any]:
    """fio's own figures in seconds, for people reading run.json (the coordinator recomputes
    its verdict figures from the histograms)."""
    sync = figures["sync"]["lat"]
    clat = figures["write"]["clat"]

    def pct(block: Mapping[str, Any], key: str) -> float | None:
        value = block["percentiles_ns"].get(key)
        return None if value is None else value / 1e9

    return {
        "syncs": sync["count"],
        "sync_p50_s": pct(sync, "50"),
        "sync_p90_s": pct(sync, "90"),
        "sync_p99_s": pct(sync, "99"),
        "sync_p99.9_s": pct(sync, "99.9"),
        "sync_max_s": sync["max_ns"] / 1e9,
        "write_p99_s": pct(clat, "99"),
        "write_iops": figures["write"]["iops"],
    }
