"""End to end, as a user runs it: `talbench run --target lab` builds a real lab of network
namespaces with real agents, measures, judges, writes its files and removes the lab, also when
interrupted or when an agent dies.  Needs root (network namespaces)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talbench.bench.lab.state import lab_dirs
from tests.bench.lab.helpers import lab_namespaces, namespaces_of_labs

pytestmark = [
    pytest.mark.root,
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

SLOW_RTT = """\
schema: 1
name: slow-rtt
probes:
  rtt: {count: 1500, interval: 10ms, stagger: 100ms, min_samples: 50}
checks:
  - name: control-plane-rtt
    metric: rtt.p99
    scope: control-plane-pairs
    fail: 15ms
    source: Talos reference architecture, "less than 15ms RTT" between control planes
"""


def labs_of_the_test(root: Path, out: Path) -> set[str]:
    """The ids of the labs this test's runs built: those still under its lab root and those its
    runs recorded in run.json (labs other tests or users run meanwhile are none of them)."""
    recorded = {json.loads(doc.read_text()).get("metadata", {}).get("lab_id") for doc in out.glob("*/run.json")}
    return {lab_dir.name for lab_dir in lab_dirs(root)} | {lab_id for lab_id in recorded if lab_id}


def lab_processes(root: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if str(root) in line]


@pytest.fixture
def env(tmp_path):
    root, out = tmp_path / "labs", tmp_path / "out"
    environment = {**os.environ, "TALBENCH_LAB_ROOT": str(root)}
    yield environment, root, out
    # whatever happened, nothing of ours may remain
    ours = labs_of_the_test(root, out)
    subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", "lab", "down"], env=environment, capture_output=True, timeout=120
    )
    assert namespaces_of_labs(ours) == []
    assert lab_processes(root) == []


def talbench(environment, *args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def verdicts(out: Path) -> tuple[dict, dict[str, dict[str, str]]]:
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "run.json").read_text())
    assert (run_dir / "junit.xml").is_file()
    by_check: dict[str, dict[str, str]] = {}
    for v in doc["verdicts"]:
        by_check.setdefault(v["check"], {})[v["subject"]] = v["status"]
    return doc, by_check


def test_run_on_a_fresh_lab_judges_every_control_plane_pair_and_removes_the_lab(env):
    environment, root, out = env
    result = talbench(
        environment,
        "run",
        "--scenario",
        "control-plane",
        "--target",
        "lab",
        "--only",
        "rtt",
        "--quick",
        "--out",
        str(out),
    )
    assert result.returncode in (0, 1), result.stderr
    doc, by_check = verdicts(out)
    assert set(by_check["control-plane-rtt"]) == {"cp1-cp2", "cp1-cp3", "cp2-cp3"}
    assert set(by_check["worker-rtt"]) == {"cp1-w1", "cp2-w1", "cp3-w1"}
    # an undelayed lab on one host is far below 15 ms
    assert set(by_check["control-plane-rtt"].values()) == {"pass"}, result.stdout
    assert doc["quick"] is True and "QUICK" in result.stdout
    assert all(len(r["data"]["samples_ns"]) >= 100 for r in doc["results"])
    assert lab_namespaces(doc["metadata"]["lab_id"]) == []
    assert not any(root.iterdir()) if root.exists() else True


def test_delayed_control_plane_fails_exactly_its_pairs(env):
    environment, _root, out = env
    result = talbench(
        environment,
        "run",
        "--scenario",
        "control-plane",
        "--target",
        "lab",
        "--only",
        "control-plane-rtt",
        "--quick",
        "--delay",
        "cp3=10ms",
        "--out",
        str(out),
    )
    assert result.returncode == 1, result.stderr
    doc, by_check = verdicts(out)
    assert by_check["control-plane-rtt"] == {"cp1-cp2": "pass", "cp1-cp3": "fail", "cp2-cp3": "fail"}
    observed = {v["subject"]: v["observed"] for v in doc["verdicts"]}
    assert observed["cp1-cp3"] >= 0.020 and observed["cp2-cp3"] >= 0.020  # 10 ms each way
    assert observed["cp1-cp2"] < 0.005


def _start_slow_run(environment, tmp_path: Path, out: Path) -> subprocess.Popen:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW_RTT)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "talbench.bench.cli",
            "run",
            "--scenario",
            str(scenario),
            "--target",
            "lab",
            "--out",
            str(out),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_agents(root: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state_file in root.glob("*/lab.json"):
            state = json.loads(state_file.read_text())
            if state.get("status") == "up":
                return state
        time.sleep(0.2)
    raise AssertionError("the lab never came up")


def test_ctrl_c_during_a_run_cleans_up_and_exits_130(env, tmp_path):
    environment, root, out = env
    run = _start_slow_run(environment, tmp_path, out)
    try:
        lab_id = _wait_for_agents(root)["lab_id"]
        time.sleep(2)  # the RTT probe is under way
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert lab_namespaces(lab_id) == []
    assert lab_processes(root) == []


def test_an_agent_killed_mid_run_yields_no_data_for_what_it_owed_in_bounded_time(env, tmp_path):
    environment, root, out = env
    run = _start_slow_run(environment, tmp_path, out)
    try:
        state = _wait_for_agents(root)
        time.sleep(2)
        cp3 = next(n for n in state["nodes"] if n["name"] == "cp3")
        os.kill(cp3["pid"], signal.SIGKILL)
        started = time.monotonic()
        _stdout, stderr = run.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, stderr
    assert elapsed < 60
    _, by_check = verdicts(out)
    statuses = by_check["control-plane-rtt"]
    assert statuses["cp1-cp3"] == "no_data" and statuses["cp2-cp3"] == "no_data"
    # what the live agents owed each other was measured and judged: a pass, or "invalid" when
    # this host's scheduler stalled the agents (seen once in CI: 8 of 158 wake-ups >= 5 ms late,
    # 1 % of the RTT samples above 5 ms) - never a missing result
    assert statuses["cp1-cp2"] in ("pass", "invalid")
    assert lab_namespaces(state["lab_id"]) == []
    assert lab_processes(root) == []
