"""A slow disk fails the fsync check, for real: a cgroup v1 blkio throttle on the disk under the
agent's data directory (``blkio.throttle.write_iops_device``) holds a real agent process and so
the fio it starts; the coordinator's driver, metric and judge see the slow fdatasyncs."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from talbench.agents import devices
from talbench.agents.probes.fsync.probe import SCRATCH_PREFIX
from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.judge import judge_subject
from talbench.bench.metric import NullProgress
from talbench.bench.model import Node, ResultKey, Role, Status, Subject
from talbench.bench.probes.fsync.driver import FsyncDriver
from talbench.bench.probes.node.driver import NodeDriver
from talbench.bench.run import metrics_of
from talbench.bench.scenario import load
from tests.agents.helpers import free_port, stop_agent_process, wait_agent_healthy

BLKIO = Path("/sys/fs/cgroup/blkio")
WRITE_IOPS = 100  # turns this VM's ~0.3 ms fdatasync into tens of ms
SCENARIO = Path(__file__).parents[3] / "scenarios" / "storage.yaml"
DRIVERS = {"fsync": FsyncDriver(), "node": NodeDriver()}
METRICS = metrics_of(DRIVERS)

pytestmark = [
    pytest.mark.root("fio"),
    pytest.mark.skipif(
        not (BLKIO / "blkio.throttle.write_iops_device").exists(), reason="needs cgroup v1 blkio throttling"
    ),
]


@contextlib.contextmanager
def throttled_cgroup(major_minor: str, iops: int) -> Iterator[Path]:
    group = BLKIO / f"tb-fsync-{secrets.token_hex(4)}"
    group.mkdir()
    try:
        (group / "blkio.throttle.write_iops_device").write_text(f"{major_minor} {iops}\n")
        yield group
    finally:
        deadline = time.monotonic() + 15
        while True:
            try:
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (BLKIO / "cgroup.procs").write_text(pid)
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@contextlib.contextmanager
def agent_in(group: Path, node: str, data_dir: Path, token_file: Path, port: int) -> Iterator[subprocess.Popen]:
    """A real agent process for ``node`` that puts itself into ``group`` before it starts."""
    argv = [
        "sh",
        "-c",
        f'echo $$ > {group}/cgroup.procs && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        "talbench.agents",
        "--listen",
        f"127.0.0.1:{port}",
        "--token-file",
        str(token_file),
        "--node",
        node,
        "--data-dir",
        str(data_dir),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        stop_agent_process(process)


@pytest.mark.parametrize(
    ("write_iops", "size", "time_limit", "complete", "control_planes"),
    [
        (WRITE_IOPS, "300KiB", "60s", True, 1),  # 133 fdatasyncs, a few seconds at this throttle
        # the 40 IOPS on every control plane: a recipe fio cannot finish in its time
        # limit is judged on what it did, on each of the three
        (40, "2MiB", "10s", False, 3),
    ],
    ids=["completes", "cut-short-on-every-control-plane"],
)
async def test_throttled_disk_fails_the_control_plane_fsync_check(
    tmp_path: Path, write_iops: int, size: str, time_limit: str, complete: bool, control_planes: int
) -> None:
    names = [f"cp{i + 1}" for i in range(control_planes)]
    for name in names:
        (tmp_path / name).mkdir()
    found = devices.describe_path(tmp_path / names[0])
    if not found["disks"]:
        pytest.skip(f"no block device under {tmp_path}")
    backing = found["disks"][0]["major_minor"]
    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    scenario = load(SCENARIO, METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=False))
    check = next(c for c in scenario.checks if c.name == "control-plane-fsync")
    settings = DRIVERS["fsync"].settings(
        {**scenario.probes["fsync"], "size": size, "reserve": 0, "time_limit": time_limit}, quick=False
    )
    nodes = tuple(Node(name, Role.CONTROL_PLANE, "127.0.0.1") for name in names)
    keys = frozenset(ResultKey("fsync", name) for name in names)
    with throttled_cgroup(backing, write_iops) as group, contextlib.ExitStack() as agents:
        ports = {name: free_port() for name in names}
        processes = {
            name: agents.enter_context(agent_in(group, name, tmp_path / name, token_file, ports[name]))
            for name in names
        }
        async with aiohttp.ClientSession() as session:
            clients = {name: AgentClient(name, session, f"http://127.0.0.1:{ports[name]}", token) for name in names}
            for name in names:
                await wait_agent_healthy(clients[name], processes[name], timeout=60.0)
                assert str(processes[name].pid) in (group / "cgroup.procs").read_text().split()
            fleet = Fleet("run-slow", nodes, clients)
            measured = await DRIVERS["fsync"].run(keys, fleet, settings, NullProgress())
    results = {m.key: m for m in measured}
    assert set(results) == keys
    for name in names:
        measurement = results[ResultKey("fsync", name)]
        assert measurement.ok, measurement.error
        verdict = judge_subject(check, METRICS["fsync.p99"], Subject((name,)), results, nodes)
        assert verdict.status is Status.FAIL, verdict  # never invalid, never "not judged"
        assert verdict.observed >= 0.010
        assert "ms" in verdict.message and "< 10ms" in verdict.threshold
        assert measurement.data["complete"] is complete
        if not complete:
            assert "cut short" in verdict.detail and "time limit after" in verdict.detail
        assert not [p for p in (tmp_path / name).iterdir() if p.name.startswith(SCRATCH_PREFIX)]
        print(
            f"{name} throttled to {write_iops} write IOPS on {backing}: "
            f"fsync p99 {verdict.observed * 1e3:.1f} ms -> {verdict.status.value}"
        )
