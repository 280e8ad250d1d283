"""Path MTU probe, coordinator side: the pair's figure is its smaller direction, a direction
without a figure makes the pair invalid (never a pass), and on a real lab the verdicts follow
the links: 1500 everywhere passes, a worker behind a 1400-byte link fails its pairs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from talbench.bench.lab.state import lab_dirs
from talbench.bench.model import Measurement, ResultKey, Subject
from talbench.bench.probes.mtu.driver import DRIVER, MTU_METRICS
from tests.bench.lab.helpers import lab_namespaces, namespaces_of_labs

PATH = MTU_METRICS[0]


def direction(node: str, peer: str, mtu: int | None, ceiling: int = 1500) -> Measurement:
    data = {
        "mtu": mtu,
        "ceiling": ceiling,
        "tried": [[1280, mtu is not None]],
        "error": None if mtu else "no reply at 1280 bytes",
    }
    return Measurement(ResultKey("mtu", node, peer), True, data=data)


def test_the_pair_is_its_smaller_direction():
    observed = PATH.observe(Subject(("a", "b")), [direction("a", "b", 1500), direction("b", "a", 1400, 1400)], [])
    assert observed.value == 1400 and observed.invalid is None
    assert "a->b 1500 (search ceiling)" in observed.detail and "b->a 1400 (search ceiling)" in observed.detail


def test_a_direction_without_a_figure_is_invalid_with_its_reason():
    observed = PATH.observe(Subject(("a", "b")), [direction("a", "b", 1500), direction("b", "a", None)], [])
    assert observed.value is None and observed.invalid == "b->a: no reply at 1280 bytes"


def test_settings_come_from_the_declaration():
    settings = DRIVER.settings({"timeout": "200ms", "attempts": 2}, quick=False)
    assert settings.timeout == pytest.approx(0.2) and settings.attempts == 2 and settings.high == 1500
    from talbench.bench.errors import ScenarioError

    with pytest.raises(ScenarioError, match="high"):
        DRIVER.settings({"high": 9000}, quick=False)


def talbench(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root: builds a lab of namespaces")
def test_on_a_lab_a_narrow_worker_link_fails_its_pairs_only(tmp_path: Path):
    root = tmp_path / "labs"
    env = {**os.environ, "TALBENCH_LAB_ROOT": str(root)}
    try:
        assert talbench(env, "lab", "up").returncode == 0
        (lab_dir,) = lab_dirs(root)
        (worker,) = [ns for ns in lab_namespaces(lab_dir.name) if ns.endswith("-w1")]
        links = subprocess.run(
            ["ip", "-n", worker, "-o", "link", "show"], capture_output=True, text=True, check=True
        ).stdout
        (dev,) = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if "LOOPBACK" not in line]
        subprocess.run(["ip", "-n", worker, "link", "set", dev, "mtu", "1400"], check=True, timeout=10)
        out = tmp_path / "out"
        done = talbench(
            env, "run", "--scenario", "control-plane", "--target", "lab", "--only", "mtu", "--out", str(out)
        )
        assert done.returncode == 1, done.stderr  # the worker's pairs fail
        (run_dir,) = list(out.iterdir())
        doc = json.loads((run_dir / "run.json").read_text())
        status = {(v["check"], v["subject"]): (v["status"], v["observed"]) for v in doc["verdicts"]}
        assert {k: v for k, v in status.items() if k[0] == "control-plane-path-mtu"} == {
            ("control-plane-path-mtu", pair): ("pass", 1500.0) for pair in ("cp1-cp2", "cp1-cp3", "cp2-cp3")
        }
        assert {k: v for k, v in status.items() if k[0] == "path-mtu"} == {
            ("path-mtu", f"{cp}-w1"): ("fail", 1400.0) for cp in ("cp1", "cp2", "cp3")
        }
    finally:
        ours = [lab_dir.name for lab_dir in lab_dirs(root)]  # this test's lab, up until lab down
        talbench(env, "lab", "down", timeout=120)
        assert namespaces_of_labs(ours) == []
