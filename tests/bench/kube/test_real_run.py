"""``talbench run --target kube`` against the real control plane of the session's Kubernetes lab
(tests/bench/kube/real_cluster.py): a whole control-plane scenario run through the CLI, and
Ctrl-C while its agents measure.  Either way nothing of the run is left: no talbench namespace,
no agent container under the lab kubelet, no agent process (helpers: tests/bench/kube/real_runs.py)."""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ET

import pytest

from talbench.bench import scenario as scenario_files
from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of
from tests.bench.kube.real_runs import Running, assert_nothing_left, kubelet_containers
from tests.bench.lab.helpers import until

pytestmark = [pytest.mark.root("ip", "sysctl", "runc"), pytest.mark.lab]


def scenario_checks(name: str) -> set[str]:
    scenario = scenario_files.load(scenario_files.resolve(name), metrics_of(default_drivers()), lambda probe, raw: None)
    return {check.name for check in scenario.checks}


def test_a_whole_control_plane_run_judges_every_check_and_leaves_nothing(real_cluster, tmp_path):
    before = kubelet_containers(real_cluster)
    started = time.monotonic()
    running = Running(
        real_cluster, real_cluster.run_argv(tmp_path, "--scenario", "control-plane", "--quick", "--format", "json")
    )
    try:
        run_id = running.run_id()
        code = running.wait(900)
    finally:
        running.stop()
    print(f"control-plane run on the real cluster: {time.monotonic() - started:.0f}s, exit {code}")
    assert code in (0, 1), running.stderr[-3000:]
    expected = scenario_checks("control-plane")
    run_json = json.loads((tmp_path / run_id / "run.json").read_text())
    assert run_json["target"] == "kube" and run_json["run_id"] == run_id
    assert expected <= {v["check"] for v in run_json["verdicts"]}, "a check without a verdict"
    assert all(v["status"] for v in run_json["verdicts"])
    suite = ET.parse(tmp_path / run_id / "junit.xml").getroot()
    judged = {case.get("classname", "").removeprefix("control-plane.") for case in suite.iter("testcase")}
    assert expected <= judged
    summary = json.loads(running.stdout)
    assert summary["exit_code"] == code and summary["run_id"] == run_id
    assert running.saw(r"cleanup: removing the run's namespace talbench-\S+: waiting for")
    assert "teardown did not finish" not in running.stderr
    assert_nothing_left(real_cluster, run_id, before)


def test_ctrl_c_while_agents_measure_exits_130_and_leaves_nothing(real_cluster, tmp_path):
    before = kubelet_containers(real_cluster)
    running = Running(real_cluster, real_cluster.run_argv(tmp_path, "--scenario", "control-plane", "--quick"))
    try:
        run_id = running.run_id()
        # the etcd probe's load is running: scratch etcd members and load workers in every agent
        until("the agents measuring (etcd load)", lambda: running.saw(r"\] etcd .*load from"), 400, interval=0.2)
        agents = {cid: pid for cid, pid in kubelet_containers(real_cluster).items() if cid not in before}
        assert agents, "no agent container found on the lab while the run measured"
        time.sleep(1.0)
        interrupted = time.monotonic()
        running.proc.send_signal(signal.SIGINT)
        code = running.wait(200)  # the agents' grace (60 s) and the namespace controller, within the 120 s bound
        took = time.monotonic() - interrupted
    finally:
        running.stop()
    print(f"Ctrl-C to exit: {took:.0f}s")
    assert code == 130, running.stderr[-3000:]
    assert "interrupted, cleaning up" in running.stderr
    assert_nothing_left(real_cluster, run_id, before, pids=list(agents.values()))
    assert not (tmp_path / run_id / "run.json").exists()  # nothing was finished, nothing is claimed


def test_a_control_plane_only_check_deploys_agents_on_the_control_planes_alone(real_cluster, tmp_path):
    """control-plane-fsync needs the control planes' disks and nothing else: the DaemonSet goes
    to cp1..cp3 by name, the worker gets no agent pod (no image pull, no CPU request there)."""
    before = kubelet_containers(real_cluster)
    seen: set[str] = set()
    argv = real_cluster.run_argv(
        tmp_path, "--scenario", "control-plane", "--only", "control-plane-fsync", "--quick", "--format", "json"
    )
    running = Running(real_cluster, argv)
    try:
        run_id = running.run_id()
        while running.proc.poll() is None:  # the agent containers the run starts, as they come
            seen |= set(kubelet_containers(real_cluster)) - set(before)
            time.sleep(0.5)
        code = running.wait(600)
    finally:
        running.stop()
    assert code in (0, 1), running.stderr[-3000:]
    run_json = json.loads((tmp_path / run_id / "run.json").read_text())
    assert run_json["metadata"]["kube"]["agents_on"] == "3 of 4 nodes"
    assert {v["subject"] for v in run_json["verdicts"] if v["check"] == "control-plane-fsync"} == {"cp1", "cp2", "cp3"}
    assert 1 <= len(seen) <= 3, seen  # one agent container per control plane at most, none on w1
    assert_nothing_left(real_cluster, run_id, before)
