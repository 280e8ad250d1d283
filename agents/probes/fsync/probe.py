"""fsync probe: fdatasync latency of the disk that holds (or will hold) etcd's data, with fio.

The etcd recipe (etcd FAQ / IBM's fio guidance): ``--rw=write --ioengine=sync --fdatasync=1
--size=22m --bs=2300``: sequential 2300-byte appends, each followed by fdatasync, like etcd's
write-ahead log.  It runs in a scratch directory named with the run id under the node's data
directory, which is removed whatever happens.  The result keeps fio's percentile tables and its
latency histograms (``json+`` bins) so the coordinator re-derives every figure itself.

Bounds: fio's ``--runtime`` stops it at the time limit (the result then says ``complete: false``
and how many writes were done; the coordinator judges those, or calls the figure invalid when
they are too few for a p99); if fio does not stop by itself it is killed a little later.
The probe refuses to start when the filesystem has less free space than the test file plus a
reserve, so it never fills the disk etcd lives on.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import model_validator

from talbench.agents import devices
from talbench.agents.params import BYTES, SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration, Tool
from talbench.agents.probes.fsync.fio import (
    FioError,
    failure_message,
    fio_command,
    fio_version,
    job_figures,
    load_json,
    run_fio,
)

SCHEMA_VERSION = 1
MiB = 1 << 20
GiB = 1 << 30

HARD_GRACE = 10.0  # seconds after --runtime before fio is killed
SETUP_ALLOWANCE = 15.0  # fio --version, device resolution, clean-up
SCRATCH_PREFIX = "talbench-fsync-"
DATA_FILE = "etcd-wal.fio"


class ScratchError(RuntimeError):
    """The scratch directory cannot be used (missing, unwritable, too little free space)."""


class FsyncParams(Params):
    """What one agent runs: the etcd recipe's sizes, fio's time limit and the free-space reserve."""

    size: int = param(
        22 * MiB, ge=64 * 1024, le=4 * GiB, unit=BYTES, help="bytes written (the etcd recipe: --size=22m)"
    )
    block_size: int = param(
        2300,
        ge=512,
        le=16 * MiB,
        unit=BYTES,
        help="bytes per write, each followed by fdatasync (about one etcd WAL entry)",
    )
    time_limit: float = param(
        120.0,
        ge=1.0,
        le=600.0,
        unit=SECONDS,
        help="fio stops there; an unfinished recipe is judged on the writes done (invalid if too few)",
    )
    reserve: int = param(
        256 * MiB, ge=0, le=1 << 50, unit=BYTES, help="refuse to start unless this much stays free beside the test file"
    )
    etcd_dir: str = devices.etcd_dir_param()

    @model_validator(mode="after")
    def _fits(self) -> FsyncParams:
        if self.block_size > self.size:
            raise ValueError(f"block_size {self.block_size} exceeds size {self.size}")
        return self

    @property
    def expected_writes(self) -> int:
        return self.size // self.block_size


class FsyncSettings(FsyncParams):
    """The scenario's ``probes.fsync`` block: the job's parameters and the coordinator's own."""

    parallel: int = param(
        1, ge=1, le=256, coordinator_only=True, help="nodes measured at once (lab nodes share one disk: keep 1 there)"
    )


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


def time_limit(params: FsyncParams) -> float:
    return params.time_limit + HARD_GRACE + SETUP_ALLOWANCE


async def measure(params: FsyncParams, ctx: ProbeContext, *, fio_binary: str = "fio") -> dict[str, Any]:
    fio = fio_command(fio_binary)  # ProbeUnavailable with the install hint
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
        etcd = devices.describe_visible(params.etcd_dir)
        args = recipe_args(params, scratch / DATA_FILE)
        outcome = await run_fio(fio, args, hard_timeout=params.time_limit + HARD_GRACE, cwd=str(scratch))
        result: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "params": params.model_dump(mode="json"),
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


def fsync_job(fio_binary: str = "fio") -> AgentJob[FsyncParams]:
    """The fsync job, driving ``fio_binary`` (a name on PATH or a path; tests point it elsewhere)."""

    async def run(params: FsyncParams, ctx: ProbeContext) -> dict[str, Any]:
        return await measure(params, ctx, fio_binary=fio_binary)

    return AgentJob("fsync", FsyncParams, run, time_limit)


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


PROBE = ProbeDeclaration(
    name="fsync",
    summary="fdatasync latency of the disk under etcd's data (fio's etcd recipe) and what kind of disk it is",
    settings=FsyncSettings,
    jobs=(fsync_job(),),
    tools=(Tool("fio", "fio"),),
)
