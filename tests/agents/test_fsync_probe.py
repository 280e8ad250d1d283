"""The fsync probe, agent side: real fio on real directories, through a real agent where the
job's error handling matters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.fsync.probe import PROBE, SCRATCH_PREFIX, fsync_job, recipe_args
from tests.agents.helpers import AUTH

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio")

SMALL = {"size": 256 * 1024, "reserve": 0, "time_limit": 30}
FSYNC = PROBE.jobs[0]


def context(data_dir: Path, run_id: str = "run-1") -> ProbeContext:
    return ProbeContext("n1", run_id, data_dir, "127.0.0.1", 1, Cleanups())


def scratch_left(data_dir: Path) -> list[str]:
    return [p.name for p in data_dir.iterdir() if p.name.startswith(SCRATCH_PREFIX)] if data_dir.exists() else []


def test_defaults_are_the_etcd_recipe() -> None:
    params = FSYNC.parse({})
    args = recipe_args(params, Path("/d/f"))
    for flag in (
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        f"--size={22 * 1024 * 1024}",
        "--bs=2300",
        "--output-format=json+",
    ):
        assert flag in args
    assert params.expected_writes == 22 * 1024 * 1024 // 2300


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"size": 10}, "size"),
        ({"block_size": 1 << 30}, "block_size"),
        ({"size": 65536, "block_size": 131072}, "block_size"),
        ({"time_limit": 0}, "time_limit"),
        ({"time_limit": 601}, "time_limit"),
        ({"time_limit": "1m"}, "time_limit"),
        ({"etcd_dir": "relative"}, "etcd_dir"),
        ({"bogus": 1}, "bogus"),
        ({"size": True}, "size"),
        ({"parallel": 2}, "parallel"),
    ],  # the coordinator's own setting is never the agent's
)
def test_out_of_bounds_params_are_refused(raw: dict, field: str) -> None:
    with pytest.raises(ProbeParamError, match=field):
        FSYNC.parse(raw)


def test_declaration_names_its_job_and_tool() -> None:
    assert PROBE.name == "fsync" and [job.name for job in PROBE.jobs] == ["fsync"]
    assert [(tool.binary, tool.debian_package) for tool in PROBE.tools] == [("fio", "fio")]
    assert PROBE.capabilities == ()


@pytest.mark.processes
async def test_run_reports_latency_device_and_removes_its_scratch(tmp_path: Path) -> None:
    probe = FSYNC
    params = probe.parse(SMALL)
    result = await probe.run(params, context(tmp_path, "run:with/odd chars"))
    assert result["complete"] is True and result["stopped"] is None
    assert result["sync"]["lat"]["count"] == params.expected_writes
    summary = result["summary"]
    assert summary["syncs"] == params.expected_writes
    assert 0 < summary["sync_p50_s"] <= summary["sync_p99_s"] <= summary["sync_p99.9_s"]
    assert summary["write_iops"] > 0
    assert result["fio_version"].startswith("fio-")
    assert result["device"]["disks"], result["device"]
    assert result["command"][0] == "fio" and "--fdatasync=1" in result["command"]
    assert scratch_left(tmp_path) == []
    assert probe.time_limit(params) > params.time_limit


@pytest.mark.processes
async def test_time_limit_stops_fio_and_marks_the_result_incomplete(tmp_path: Path) -> None:
    probe = FSYNC
    params = probe.parse({"size": 1 << 30, "reserve": 0, "time_limit": 1})
    result = await probe.run(params, context(tmp_path))
    assert result["complete"] is False
    assert "time limit" in result["stopped"]
    assert 0 < result["write"]["ios"] < params.expected_writes
    assert scratch_left(tmp_path) == []


@pytest.mark.processes
async def test_short_free_space_is_refused_before_writing(start_agent, tmp_path: Path) -> None:
    agent = await start_agent({"fsync": FSYNC})
    job = await agent.submit("fsync", {**SMALL, "reserve": 1 << 50})
    job = await agent.wait(job["id"], timeout=30)
    assert job["state"] == "failed" and job["error_kind"] == "failed"
    assert "not enough free space" in job["error"] and "\n" not in job["error"]
    assert scratch_left(agent.config.data_dir) == []


async def test_missing_fio_gives_an_unavailable_job_with_the_hint(start_agent, tmp_path: Path) -> None:
    agent = await start_agent({"fsync": fsync_job(fio_binary=str(tmp_path / "no-fio"))})
    job = await agent.submit("fsync", SMALL)
    job = await agent.wait(job["id"], timeout=30)
    assert job["state"] == "failed"
    assert job["error_kind"] == "unavailable"
    assert job["error"] == "fio not found: apt-get install fio"


@pytest.mark.processes
async def test_cancelled_job_leaves_no_scratch_and_no_fio(start_agent) -> None:
    agent = await start_agent({"fsync": FSYNC})
    job = await agent.submit("fsync", {"size": 1 << 30, "reserve": 0, "time_limit": 60})
    data_dir = agent.config.data_dir
    for _ in range(100):
        if scratch_left(data_dir):
            break
        await asyncio.sleep(0.05)
    assert scratch_left(data_dir), "the probe should have created its scratch directory"
    response = await agent.client.delete(f"/v1/jobs/{job['id']}", headers=AUTH)
    assert response.status == 200
    job = await agent.wait(job["id"], timeout=30)
    assert job["state"] == "cancelled"
    assert scratch_left(data_dir) == []


async def test_bad_params_are_a_400(start_agent) -> None:
    agent = await start_agent({"fsync": FSYNC})
    response = await agent.client.post(
        "/v1/jobs", json={"schema": 1, "run_id": "r1", "probe": "fsync", "params": {"size": 1}}, headers=AUTH
    )
    assert response.status == 400
    assert "size" in (await response.json())["error"]


# ---- real filesystems that cannot take the test (root: mounts) -------------------------------


@contextlib.contextmanager
def tmpfs(options: str) -> Iterator[Path]:
    mount_point = Path(tempfile.mkdtemp(prefix="tb-fsync-mnt-"))
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tb-fsync-test", str(mount_point)], check=True, timeout=10
        )
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=10)
    finally:
        os.rmdir(mount_point)


@pytest.mark.root("mount", "umount")
async def test_full_filesystem_gives_a_clear_node_error(start_agent) -> None:
    probe = FSYNC
    with tmpfs("size=2m") as mount_point:
        data_dir = mount_point / "data"
        data_dir.mkdir()
        with contextlib.suppress(OSError), open(mount_point / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
        with pytest.raises(RuntimeError) as caught:
            await probe.run(probe.parse(SMALL), context(data_dir))
        assert "not enough free space" in str(caught.value)
        assert scratch_left(data_dir) == []


@pytest.mark.root("mount", "umount")
async def test_read_only_data_dir_gives_a_clear_node_error() -> None:
    probe = FSYNC
    with tmpfs("size=4m,ro") as mount_point:
        with pytest.raises(RuntimeError) as caught:
            await probe.run(probe.parse(SMALL), context(mount_point))
        message = str(caught.value)
        assert "not writable" in message or "Read-only" in message, message
        assert "\n" not in message
        assert scratch_left(mount_point) == []
