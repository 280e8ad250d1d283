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

from tests.bench.kube.conftest import loopback_nodes
from tests.bench.kube.emulator import ApiEmulator
from tests.bench.kube.runs import SCENARIO


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
        )
        stdout, _stderr = await asyncio.wait_for(proc.communicate(), 180)
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
            "run", "--scenario", str(scenario), "--kubeconfig", str(kubeconfig), "--out", str(tmp_path / "out")
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
