"""LabDispatcher: a Fleet of real lab agents; its own lab is removed afterwards whatever happens,
a lab brought up by ``talbench lab up`` is used and left up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

import pytest

from talbench.bench.dispatch.lab import LabDispatcher
from talbench.bench.lab import lab, processes
from talbench.bench.lab.state import lab_dirs
from talbench.bench.lab.topology import LabSpec
from tests.bench.lab.helpers import lab_namespaces, lab_root, skip_unless_lab_possible

pytestmark = [pytest.mark.root("ip", "sysctl"), pytest.mark.lab]

SMALL = LabSpec(control_planes=2, workers=1)


@pytest.fixture
def root():
    skip_unless_lab_possible(agents=True)
    with lab_root() as path:
        yield path


async def test_deploy_yields_ready_agents_and_removes_its_own_lab(root):
    dispatcher = LabDispatcher(root, SMALL)
    assert dispatcher.name == "lab"
    async with dispatcher.deploy("run-a") as fleet:
        lab_id = fleet.metadata["lab_id"]
        assert fleet.metadata["lab_owned_by_run"] is True
        assert [n.name for n in fleet.nodes] == ["cp1", "cp2", "w1"] and fleet.unready == {}
        assert fleet.node("cp1").is_control_plane and fleet.target == "lab"
        for name, client in fleet.agents.items():
            assert (await client.health())["node"] == name
            assert (await client.facts())["node"] == name  # authenticated: the lab's token works
        assert len(lab_namespaces(lab_id)) == 4
    assert lab_namespaces(lab_id) == [] and lab_dirs(root) == ()


async def test_a_failing_run_still_removes_the_lab(root):
    with pytest.raises(RuntimeError, match="probe blew up"):
        async with LabDispatcher(root, SMALL).deploy("run-b") as fleet:
            lab_id = fleet.metadata["lab_id"]
            raise RuntimeError("probe blew up")
    assert lab_namespaces(lab_id) == [] and lab_dirs(root) == ()


async def test_cancelling_while_the_lab_comes_up_removes_it(root):
    entered = asyncio.Event()

    async def run() -> None:
        async with LabDispatcher(root, SMALL).deploy("run-c"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    for _ in range(200):  # cancel as soon as the lab exists on disk, i.e. in the middle of up()
        if lab_dirs(root) or task.done():
            break
        await asyncio.sleep(0.01)
    (lab_dir,) = lab_dirs(root)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert not entered.is_set()
    assert lab_namespaces(lab_dir.name) == [] and lab_dirs(root) == ()


async def test_an_existing_lab_is_used_left_up_and_a_dead_agent_is_unready(root):
    state = await asyncio.to_thread(lab.up, SMALL, root, persistent=True)
    os.kill(state.node("cp2").pid, signal.SIGKILL)
    assert processes.wait_gone([state.node("cp2").pid], 5.0) == ()
    async with LabDispatcher(root, LabSpec(3, 1), agent_ready_timeout=5).deploy("run-d") as fleet:
        assert fleet.metadata["lab_id"] == state.lab_id and fleet.metadata["lab_owned_by_run"] is False
        assert [n.name for n in fleet.nodes] == ["cp1", "cp2", "w1"]  # the lab's shape, not the spec's
        assert set(fleet.unready) == {"cp2"} and "exited" in fleet.unready["cp2"]
        assert set(fleet.agents) == {"cp1", "w1"}
    assert len(lab_namespaces(state.lab_id)) == 4 and lab_dirs(root) == (state.lab_dir,)
    await asyncio.to_thread(lab.down, root)
    assert lab_namespaces(state.lab_id) == []


RUN_UNTIL_CTRL_C = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from talbench.bench.dispatch.lab import LabDispatcher
    from talbench.bench.lab.topology import LabSpec

    async def main():
        async with LabDispatcher(Path(sys.argv[1]), LabSpec(1, 1)).deploy("run-e") as fleet:
            print(fleet.metadata["lab_id"], len(fleet.agents), flush=True)
            await asyncio.sleep(60)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


async def test_ctrl_c_during_a_run_removes_the_lab(root):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN_UNTIL_CTRL_C, str(root), stdout=asyncio.subprocess.PIPE
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        assert len(line) == 2 and line[1] == "2", "the run never got its fleet"
        assert len(lab_namespaces(line[0])) == 3
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 130
        assert lab_namespaces(line[0]) == [] and lab_dirs(root) == ()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
