"""The RTT heatmap in headless Chromium where it is hard to draw: 1,000 nodes whose directions
beyond the control planes were compacted into histograms, and nodes without any result (no row,
no column of values).  Every measured direction is a cell, in its place, with its own hover
details.  The browser and the page checks are tests/bench/report/browser.py's."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from talbench.bench.report.html import data as html_data
from talbench.bench.report.html import page as html
from talbench.bench.report.runjson import write as runjson
from tests.bench.report.browser import (
    HOVER_AT,
    NEEDS_CHROMIUM,
    check_page,
    chromium,
    measured_directions,
    screenshot_path,
    slowest,
)
from tests.bench.report.records import judged_record, thousand_nodes

pytestmark = [pytest.mark.processes, NEEDS_CHROMIUM]


async def test_a_node_without_results_keeps_its_empty_row_and_column(tmp_path):
    """w2's agent never answered (no row) and w3 was measured by no one (no column): both stay
    on the axes, empty, and every other cell is drawn where it belongs (not stretched across
    their places), with its own hover details (w3 -> cp1 and cp1 -> w2, past the gaps)."""
    full = judged_record(3, 3)
    record = replace(full, results=tuple(m for m in full.results if m.key.node != "w2" and m.key.peer != "w3"))
    report = tmp_path / "report.html"
    report.write_text(html.render(record), encoding="utf-8")
    measured = measured_directions(json.loads(runjson.dumps(record)))
    assert len(measured) == 6 * 5 - 5 - 5 and ("w3", "cp1") in measured and ("cp1", "w2") in measured
    matrix = html_data.rtt_matrix(record)
    assert matrix is not None
    async with chromium(tmp_path) as page:
        seen = await check_page(page, report, measured, slowest(record), screenshot_path(tmp_path, "report-gap.png"))
        order = seen["sorted"]
        for agent, peer in (("w3", "cp1"), ("cp1", "w2"), ("w3", "w2")):
            hover = await page.evaluate(HOVER_AT % (order.index(peer), order.index(agent)))
            (cell,) = (c for c in matrix.cells if (matrix.nodes[c.row], matrix.nodes[c.column]) == (agent, peer))
            assert hover is not None and f"{agent} → {peer}" in hover, hover
            shown = re.search(r"p50 ([0-9.]+) ms", hover)
            assert shown and abs(float(shown.group(1)) - cell.p50 * 1e3) < 0.002 and f"{cell.samples} samples" in hover
    assert seen["heatmap"]["x"] == ["cp1", "cp2", "cp3", "w1", "w2", "w3"] == seen["heatmap"]["y"]


async def test_chromium_draws_the_heatmap_of_1000_nodes(tmp_path):
    """1,000 nodes, each measured to its next 3, the directions beyond the control planes kept
    as histograms (as a 1,000-node run keeps them): a million positions, 3,000 cells, every one
    drawn, its hover details shown, and re-sortable in the browser."""
    record = thousand_nodes()
    report = tmp_path / "report.html"
    report.write_text(html.render(record), encoding="utf-8")
    measured = measured_directions(json.loads(runjson.dumps(record)))
    assert len(measured) == 3000
    async with chromium(tmp_path) as page:
        seen = await check_page(page, report, measured, slowest(record), screenshot_path(tmp_path, "report-1000.png"))
        order = seen["sorted"]  # the axes as the slowest-first button left them
        compacted = await page.evaluate(HOVER_AT % (order.index("w2"), order.index("w1")))  # a histogram only
    assert seen["heatmap"]["x"][:6] == ["cp1", "cp2", "cp3", "cp4", "cp5", "w1"]
    assert compacted is not None and "w1 → w2" in compacted and "20 samples" in compacted and "p50" in compacted
