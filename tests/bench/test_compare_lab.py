"""`talbench compare` on runs of a real lab (network namespaces, real agents, the lab's delay
line): two runs of the same lab flag nothing (exit 0); a run with 10 ms added on cp3 flags
exactly cp3's pairs as RTT regressions (exit 1).  Needs root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]


def talbench(environment: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_rtt(environment: dict[str, str], out: Path, *extra: str) -> Path:
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
        *extra,
    )
    assert result.returncode in (0, 1), result.stderr
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "run.json").read_text())
    untrusted = [f"{v['check']} {v['subject']}: {v['message']}" for v in doc["verdicts"] if v["status"] == "invalid"]
    # a host too loaded to measure makes the figures untrusted, and then there is nothing to compare
    assert not untrusted, "\n".join(untrusted)
    return run_dir


@pytest.fixture
def environment(tmp_path):
    environment = {**os.environ, "TALBENCH_LAB_ROOT": str(tmp_path / "labs")}
    yield environment
    subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", "lab", "down"], env=environment, capture_output=True, timeout=120
    )


def regressions(environment: dict[str, str], base: Path, new: Path) -> tuple[int, set[tuple[str, str]], str]:
    result = talbench(environment, "compare", str(base), str(new), "--format", "json", timeout=120)
    assert result.returncode in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    flagged = {(c["check"], c["subject"]) for c in doc["changes"] if c["outcome"] == "regression"}
    return result.returncode, flagged, result.stdout


def test_compare_flags_exactly_the_delayed_nodes_pairs(environment, tmp_path):
    up = talbench(environment, "lab", "up")
    assert up.returncode == 0, up.stderr
    first = run_rtt(environment, tmp_path / "first")
    second = run_rtt(environment, tmp_path / "second")
    down = talbench(environment, "lab", "down")
    assert down.returncode == 0, down.stderr
    delayed = run_rtt(environment, tmp_path / "delayed", "--delay", "cp3=10ms")

    code, flagged, out = regressions(environment, first, second)
    assert (code, flagged) == (0, set()), out

    code, flagged, out = regressions(environment, first, delayed)
    assert code == 1
    assert flagged == {
        ("control-plane-rtt", "cp1-cp3"),
        ("control-plane-rtt", "cp2-cp3"),
        ("worker-rtt", "cp3-w1"),
    }, out

    table = talbench(environment, "compare", str(first), str(delayed), "--html", str(tmp_path / "compare.html"))
    assert table.returncode == 1 and "3 regressions" in table.stdout
    assert (tmp_path / "compare.html").read_text().count('<tr class="regression">') == 3
