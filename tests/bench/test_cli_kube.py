"""`talbench run --target kube` as a user runs it: a real `talbench` process finds an emulated
Talos cluster through a kubeconfig file, deploys its agents (the emulator's kubelet runs the
DaemonSet's real command on loopback addresses), measures, judges, and leaves no object of the
run behind, also after Ctrl-C.  No root needed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from testbed.kubesim.emulator import ApiEmulator
from tests.bench.kube.conftest import loopback_nodes
from tests.bench.kube.runs import SCENARIO

pytestmark = pytest.mark.processes

IMAGE = "registry.example/talbench@sha256:" + "ab" * 32


async def talbench(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "talbench.bench.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def run_ids(emu: ApiEmulator) -> set[str]:
    return {r.path.split("talbench-", 1)[1].split("/", 1)[0] for r in emu.requests if "/namespaces/talbench-" in r.path}


async def test_a_kube_run_from_the_command_line_judges_and_cleans_up(tmp_path: Path) -> None:
    scenario = tmp_path / "kube.yaml"
    scenario.write_text(SCENARIO)
    async with ApiEmulator(loopback_nodes(tmp_path, base=3)) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig")
        proc = await talbench(
            "run",
            "--scenario",
            str(scenario),
            "--kubeconfig",
            str(kubeconfig),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "json",
            "--image",
            IMAGE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
        assert stdout, stderr.decode()
        summary = json.loads(stdout)
        assert proc.returncode == 0, [v for v in summary["verdicts"] if v["status"] != "pass"]
        assert summary["target"] == "kube"
        statuses = {(v["check"], v["subject"]): v["status"] for v in summary["verdicts"]}
        assert statuses[("control-plane-rtt", "cp1-cp2")] == "pass"
        assert statuses[("control-plane-count", "cluster")] == "pass"
        assert Path(summary["files"]["junit"]).is_file()
        assert emu.run_objects(summary["run_id"]) == []


async def test_ctrl_c_during_a_kube_run_deletes_the_runs_objects_and_exits_130(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SCENARIO.replace("count: 60, interval: 5ms", "count: 3000, interval: 10ms"))
    async with ApiEmulator(loopback_nodes(tmp_path, base=4)) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig")
        proc = await talbench(
            "run",
            "--scenario",
            str(scenario),
            "--kubeconfig",
            str(kubeconfig),
            "--out",
            str(tmp_path / "out"),
            "--image",
            IMAGE,
        )
        try:
            for _ in range(600):  # until the agents are measuring (jobs go through the pod proxy)
                if any(r.resource == "pods/proxy" and r.method == "POST" for r in emu.requests):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the run never submitted a probe job")
            await asyncio.sleep(1)
            proc.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 130, stderr.decode()
        assert b"Traceback" not in stderr
        (run_id,) = run_ids(emu)
        assert emu.run_objects(run_id) == []


async def test_a_kube_run_without_an_image_stops_with_exit_2_before_touching_the_cluster(tmp_path: Path) -> None:
    async with ApiEmulator(loopback_nodes(tmp_path, base=5)) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig")
        for image_args, needle in (
            ((), "talbench: error: --image is required"),
            (("--image", "ghcr.io/Someone/talbench:v1"), "not an image reference"),
            (("--image", "reg.example/talbench"), "name a tag"),
        ):
            proc = await talbench("run", "--scenario", "control-plane", "--kubeconfig", str(kubeconfig), *image_args)
            _, stderr = await asyncio.wait_for(proc.communicate(), 60)
            text = stderr.decode()
            assert proc.returncode == 2, text
            assert needle in text and "Traceback" not in text
            if not image_args:
                assert "hint: build it with 'make image', push it with 'skopeo copy" in text
                assert "oci-archive:results/image/" in text and "--image REGISTRY/talbench@" in text
        assert emu.requests == []  # nothing reached the API server


async def test_manifests_need_an_image_too(tmp_path: Path) -> None:
    proc = await talbench("manifests", "--cronjob", "--schedule", "@daily")
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"--image is required" in stderr and b"make image" in stderr
    proc = await talbench("manifests", "--image", IMAGE, "--image-pull-secret", "regcred")
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert f"image: {IMAGE}" in stdout.decode() and "- name: regcred" in stdout.decode()


async def test_no_agent_able_to_pull_its_image_is_exit_3_with_a_line_per_node(tmp_path: Path) -> None:
    scenario = tmp_path / "kube.yaml"
    scenario.write_text(SCENARIO)
    nodes = loopback_nodes(tmp_path, base=6)
    for node in nodes:
        node.failure = "ImagePullBackOff"
    async with ApiEmulator(nodes) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig")
        proc = await talbench(
            "run",
            "--scenario",
            str(scenario),
            "--kubeconfig",
            str(kubeconfig),
            "--image",
            IMAGE,
            "--out",
            str(tmp_path),
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 120)
        text = stderr.decode()
        assert proc.returncode == 3, text
        lines = [line for line in text.splitlines() if f"ImagePullBackOff for image {IMAGE}" in line]
        # one line per node the scenario's checks needed an agent on (control-plane RTT: not w1)
        assert sorted(line.split(":", 1)[0].strip() for line in lines) == ["cp1", "cp2", "cp3"], text
        assert f"hint: can the nodes pull {IMAGE}?" in text
        assert not (tmp_path / "junit.xml").exists()  # no verdicts: nothing was judged
        (run_id,) = run_ids(emu)
        assert emu.run_objects(run_id) == []
