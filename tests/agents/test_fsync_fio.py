"""The fio runner: real fio, small sizes."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import psutil
import pytest

from talbench.agents.probe import ProbeUnavailable
from talbench.agents.probes.fsync.fio import (
    INSTALL_HINT,
    FioOutcome,
    failure_message,
    fio_command,
    fio_version,
    job_figures,
    load_json,
    run_fio,
)

pytestmark = [pytest.mark.processes, pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio")]


def recipe(path: Path, size: str = "256k", *extra: str) -> list[str]:
    return [
        "--name=t",
        f"--filename={path}",
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        f"--size={size}",
        "--bs=2300",
        "--output-format=json+",
        *extra,
    ]


def fio_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        try:
            if proc.info["name"] == "fio" and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_missing_fio_is_unavailable_with_the_install_hint(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable) as caught:
        fio_command(str(tmp_path / "no-fio-here"))
    assert str(caught.value) == INSTALL_HINT == "fio not found: apt-get install fio"


async def test_version_is_what_fio_prints() -> None:
    version = await fio_version(fio_command())
    assert version.startswith("fio-")


async def test_sync_latency_comes_from_sync_lat_ns_with_one_fdatasync_per_write(tmp_path: Path) -> None:
    outcome = await run_fio(fio_command(), recipe(tmp_path / "f"), hard_timeout=60)
    assert outcome.exit_code == 0 and not outcome.killed
    doc = load_json(outcome.stdout)
    figures = job_figures(doc)
    writes = 256 * 1024 // 2300
    assert figures["write"]["ios"] == writes
    sync = figures["sync"]["lat"]
    # sync.total_ios reads 0 in fio's JSON: the count comes from lat_ns.N
    assert doc["jobs"][0]["sync"]["total_ios"] == 0
    assert sync["count"] == writes
    assert sum(sync["bins_ns"].values()) == sync["count"]
    assert 0 < sync["min_ns"] <= sync["percentiles_ns"]["50"] <= sync["percentiles_ns"]["99"]
    assert figures["write"]["clat"]["count"] == writes
    assert figures["write"]["iops"] > 0


async def test_hard_timeout_kills_fio_and_its_job_process(tmp_path: Path) -> None:
    before = {p.pid for p in fio_processes()}
    started = time.monotonic()
    outcome = await run_fio(
        fio_command(), recipe(tmp_path / "f", "4m", "--time_based", "--runtime=60"), hard_timeout=1.0
    )
    assert outcome.killed and outcome.exit_code is None
    assert time.monotonic() - started < 10
    await asyncio.sleep(0.2)
    assert {p.pid for p in fio_processes()} - before == set()


async def test_cancelling_the_caller_kills_fio(tmp_path: Path) -> None:
    before = {p.pid for p in fio_processes()}
    task = asyncio.create_task(
        run_fio(fio_command(), recipe(tmp_path / "f", "4m", "--time_based", "--runtime=60"), hard_timeout=120)
    )
    await asyncio.sleep(1.0)
    assert {p.pid for p in fio_processes()} - before, "fio should be running"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert {p.pid for p in fio_processes()} - before == set()


async def test_fio_failure_is_one_line_naming_the_cause() -> None:
    outcome = await run_fio(fio_command(), recipe(Path("/proc/talbench-nope/f")), hard_timeout=30)
    assert outcome.exit_code != 0
    message = failure_message(outcome)
    assert "\n" not in message and "/proc/talbench-nope" in message


def test_failure_message_prefers_fio_error_lines() -> None:
    outcome = FioOutcome(
        1,
        "",
        "fio: pid=12, err=28/file:io_u.c:1845, func=io_u error, error=No space left on device\nRun status...\n",
        False,
    )
    assert "No space left on device" in failure_message(outcome)
