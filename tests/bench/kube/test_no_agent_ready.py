"""No agent ready is "could not run" (exit 3), never a failed check: one line per eligible node
naming the cause as the cluster reports it (the image that cannot be pulled, the crash-looping
agent's last log line, the scheduler's message), and the run's objects are removed.  Against the
API emulator, whose kubelet and scheduler write what the real ones write (testbed/kubesim/pods.py)."""

from __future__ import annotations

import socket
import time

import pytest

from talbench.bench.errors import CouldNotRun
from testbed.kubesim.emulator import ApiEmulator
from tests.bench.kube.conftest import dispatcher_for, free_port, loopback_nodes

pytestmark = pytest.mark.processes

IMAGE = "registry.example/talbench@sha256:" + "ab" * 32


def node_lines(error: CouldNotRun) -> dict[str, str]:
    head, *lines = str(error).splitlines()
    assert head.startswith("no agent became ready on any of the")
    return dict(line.strip().split(": ", 1) for line in lines)


async def test_images_no_node_can_pull_end_the_run_with_exit_3_naming_the_image(tmp_path):
    nodes = loopback_nodes(tmp_path)
    for node, reason in zip(
        nodes, ["ImagePullBackOff", "ErrImagePull", "ImagePullBackOff", "ImagePullBackOff"], strict=True
    ):
        node.failure = reason
    async with ApiEmulator(nodes) as emu:
        started = time.monotonic()
        with pytest.raises(CouldNotRun) as caught:
            async with dispatcher_for(emu, tmp_path, image=IMAGE, ready_timeout=60).deploy("run-nopull"):
                pytest.fail("a run without agents went on")
        assert time.monotonic() - started < 30  # a pull failure is not waited out
        assert caught.value.exit_code == 3
        lines = node_lines(caught.value)
        assert sorted(lines) == ["cp1", "cp2", "cp3", "w1"]
        assert f"ImagePullBackOff for image {IMAGE}" in lines["cp1"]
        assert f'Back-off pulling image "{IMAGE}"' in lines["cp1"]
        assert f"ErrImagePull for image {IMAGE}" in lines["cp2"] and "not found" in lines["cp2"]
        hint = caught.value.hint or ""
        assert f"can the nodes pull {IMAGE}?" in hint and "--image-pull-secret" in hint and "make image" in hint
        assert emu.run_objects("run-nopull") == []


async def test_agents_that_crash_everywhere_are_named_with_their_last_log_line(tmp_path):
    nodes = loopback_nodes(tmp_path, control_planes=1, workers=1)
    port = free_port([n.address for n in nodes])
    squatters = []
    try:
        for node in nodes:  # the agent port is taken on every node: every agent exits 3
            squatter = socket.socket()
            squatter.bind((node.address, port))
            squatter.listen()
            squatters.append(squatter)
        async with ApiEmulator(nodes) as emu:
            with pytest.raises(CouldNotRun) as caught:
                async with dispatcher_for(emu, tmp_path, agent_port=port).deploy("run-crashall"):
                    pytest.fail("a run without agents went on")
            lines = node_lines(caught.value)
            for node in nodes:
                line = lines[node.name]
                assert "CrashLoopBackOff" in line and "last exit code 3" in line, line
                assert f"last log line: talbench agent: TCP {node.address}:{port}" in line, line
            assert caught.value.hint is None  # not an image problem
            assert emu.run_objects("run-crashall") == []
    finally:
        for squatter in squatters:
            squatter.close()


async def test_an_unschedulable_agent_is_named_with_the_schedulers_message(tmp_path):
    nodes = loopback_nodes(tmp_path, control_planes=1, workers=1)
    nodes[0].failure = "Unschedulable"
    nodes[1].failure = "ImagePullBackOff"
    async with ApiEmulator(nodes) as emu:
        with pytest.raises(CouldNotRun) as caught:
            async with dispatcher_for(emu, tmp_path, image=IMAGE, ready_timeout=2).deploy("run-nosched"):
                pytest.fail("a run without agents went on")
        lines = node_lines(caught.value)
        assert lines["cp1"].startswith("agent pod talbench-agent-run-nosched-")
        assert "Unschedulable: 0/2 nodes are available: 1 Insufficient memory" in lines["cp1"]
        assert "(after 2s)" in lines["cp1"]  # the scheduler may still place it: waited for
        assert "ImagePullBackOff" in lines["w1"]
        assert emu.run_objects("run-nosched") == []


async def test_one_unschedulable_node_is_reported_and_the_others_run(tmp_path):
    nodes = loopback_nodes(tmp_path)
    nodes[-1].failure = "Unschedulable"
    async with ApiEmulator(nodes) as emu:
        async with dispatcher_for(emu, tmp_path, ready_timeout=15).deploy("run-onesched") as fleet:
            assert set(fleet.agents) == {"cp1", "cp2", "cp3"}
            assert "Unschedulable: 0/4 nodes are available" in fleet.unready["w1"]
        # the pending pod is matched to its node by its affinity: one pod, not one per poll
        assert emu.run_objects("run-onesched") == []
