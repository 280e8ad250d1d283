"""report.html in a real browser: headless Chromium (Debian's ``chromium``) loads the page over
the DevTools protocol, and the tests read what a person would see: no console error or uncaught
exception, no request that leaves the file, every plot drawn, one heatmap cell per measured
direction, the hover text of a cell, the slowest-first button, and a full-page screenshot
(``TALBENCH_REPORT_SCREENSHOT`` keeps it where a person can look at it).  The browser and those
checks are tests/bench/report/browser.py's.

The first test renders a run judged by the real judge from factory measurements; the second
(root) makes a real short lab run with `talbench run` and opens the report.html it left, then
re-judges that run with `talbench report --scenario`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from talbench.bench.report.html import page as html
from talbench.bench.report.runjson.read import read_run
from tests.bench.report.browser import (
    NEEDS_CHROMIUM,
    check_page,
    chromium,
    measured_directions,
    screenshot_path,
    slowest,
)
from tests.bench.report.records import judged_record

pytestmark = [pytest.mark.processes, NEEDS_CHROMIUM]


async def test_chromium_renders_the_report_without_errors(tmp_path):
    from talbench.bench.report.runjson import write as runjson

    record = judged_record(3, 2)
    report = tmp_path / "report.html"
    report.write_text(html.render(record), encoding="utf-8")
    measured = measured_directions(json.loads(runjson.dumps(record)))
    assert len(measured) == 19
    async with chromium(tmp_path) as page:
        seen = await check_page(
            page, report, measured, slowest(record), screenshot_path(tmp_path, "report-factory.png")
        )
    assert seen["heatmap"]["x"] == ["cp1", "cp2", "cp3", "w1", "w2"]


# ---- a real lab run ----------------------------------------------------------------------------

LOOSE = """\
schema: 1
name: loose-rtt
checks:
  - name: rtt-within-a-second
    metric: rtt.p99
    scope: all-pairs
    fail: 1s
    source: a test's own limit, loose enough that any lab passes
  - name: fsync-within-a-second
    metric: fsync.p99
    scope: control-plane-nodes
    fail: 1s
    source: a test's own limit
  - name: kubeprism-reachable
    metric: kubeprism.answered
    scope: all-nodes
    fail: 100 %
    source: not measured by this run, so left out of the re-judged report
"""


def talbench(environment: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.root
@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces")
@pytest.mark.skipif(shutil.which("ip") is None or shutil.which("fio") is None, reason="needs iproute2 and fio")
async def test_a_lab_run_leaves_a_report_that_chromium_renders(tmp_path):
    environment = {**os.environ, "TALBENCH_LAB_ROOT": str(tmp_path / "labs")}
    out = tmp_path / "out"
    try:
        result = await asyncio.to_thread(
            talbench,
            environment,
            *("run", "--scenario", "control-plane", "--target", "lab", "--quick"),
            *("--only", "rtt,fsync,node", "--out", str(out)),
        )
    finally:
        await asyncio.to_thread(talbench, environment, "lab", "down", timeout=120)
    assert result.returncode in (0, 1), result.stderr
    (run_dir,) = list(out.iterdir())
    report = run_dir / "report.html"
    assert report.is_file() and str(report) in result.stdout
    doc = json.loads((run_dir / "run.json").read_text())
    measured = measured_directions(doc)
    lab_order = slowest(read_run(run_dir))
    assert len(measured) == 12  # 3 control planes and a worker, every direction
    async with chromium(tmp_path) as page:
        seen = await check_page(page, report, measured, lab_order, screenshot_path(tmp_path, "report-lab.png"))
        assert {"cdf-fsync", "cpu-over-time"} <= set(seen["drawn"])

    loose = tmp_path / "loose.yaml"
    loose.write_text(LOOSE)
    again = await asyncio.to_thread(talbench, environment, "report", str(run_dir), "--scenario", str(loose))
    assert again.returncode == 0, again.stdout + again.stderr
    rejudged = run_dir / "report-loose-rtt.html"
    assert str(rejudged) in again.stdout and "PASSED" in again.stdout
    page_text = rejudged.read_text()
    assert "rtt-within-a-second" in page_text and "kubeprism-reachable</" not in page_text
    assert "Left out, their probe did not run: kubeprism-reachable" in page_text
    async with chromium(tmp_path) as page:
        await check_page(page, rejudged, measured, lab_order, screenshot_path(tmp_path, "report-lab-rejudged.png"))
