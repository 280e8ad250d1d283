"""report.html as a reader gets it, without a browser: what the page says and holds (verdicts,
every check with value, threshold and source, the heatmap's cells, node facts), that it fetches
nothing, and that the heatmap stays drawable at 1,000 nodes.  tests/bench/report/
test_html_browser.py loads the page in headless Chromium."""

from __future__ import annotations

import json
import re
import time

from talbench.bench.report.html import data as html_data
from talbench.bench.report.html import figures as html_figures
from talbench.bench.report.html import page as html
from talbench.bench.report.runjson import write as runjson
from talbench.bench.report.runjson.read import parse_run
from tests.bench.report.html_text import text_of
from tests.bench.report.records import judged_record, thousand_nodes


def figure_data(page: str, div_id: str) -> list[dict]:
    """The data plotly is given for the figure in ``div_id`` (what the browser draws)."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*(\[.*?\]),\s*\{', page, flags=re.S)
    assert match, f"no plot {div_id}"
    return json.loads(match.group(1))


def heatmap_cells(trace: dict) -> dict[tuple[str, str], float]:
    """(agent, peer) -> p99 ms of the cells the heatmap draws: its (x, y, z) columns with a value."""
    return {(y, x): z for x, y, z in zip(trace["x"], trace["y"], trace["z"], strict=True) if z is not None}


def test_the_page_holds_every_verdict_check_threshold_and_source():
    record = judged_record()
    page = html.render(record)
    text = text_of(page)
    assert "FAILED" in text and "QUICK run" in text
    assert record.run_id in text
    for check in record.checks:
        assert check.name in text
        assert check.source[:60] in text  # the source of the threshold is quoted
    for v in record.verdicts:
        assert f"{v.check}" in text and str(v.subject) in text
    # the failing pair's observed value and threshold, as the judge wrote them
    failing = next(v for v in record.verdicts if v.check == "control-plane-rtt" and str(v.subject) == "cp1-cp3")
    assert failing.status.value == "fail"
    assert failing.message in text and failing.threshold in text


def test_the_page_fetches_nothing():
    page = html.render(judged_record())
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)  # plotly.js names its home page
    assert not re.search(r"(src|href|url)[=(]", markup.replace('href="#', ""))
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js inlined


def test_heatmap_has_one_cell_per_measured_direction_control_planes_first():
    record = judged_record(3, 2)
    page = html.render(record)
    (trace,) = figure_data(page, "rtt-heatmap")
    (layout,) = re.findall(
        r'"rtt-heatmap",\s*\[.*?\],\s*(\{.*?"updatemenus".*?\}),\s*\{"displaylogo"', page, flags=re.S
    )
    assert trace["type"] == "heatmap"
    order = ["cp1", "cp2", "cp3", "w1", "w2"]
    assert json.loads(layout)["xaxis"]["categoryarray"] == order == json.loads(layout)["yaxis"]["categoryarray"]
    z = heatmap_cells(trace)
    measured = {(m.key.node, m.key.peer) for m in record.results if m.data.get("samples_ns")}
    assert set(z) == measured  # the direction that lost every packet has no cell
    assert ("cp1", "w1") not in z and len(z) == 5 * 4 - 1
    assert z[("cp1", "cp3")] > 25 > 5 > z[("cp1", "cp2")]  # milliseconds
    # every node is on both axes of the grid plotly.js builds from the columns
    assert set(trace["x"]) == set(trace["y"]) == set(order)


def test_cdfs_come_from_the_raw_samples():
    record = judged_record()
    page = html.render(record)
    lines = {line["name"].split(" ")[0]: line for line in figure_data(page, "cdf-rtt")}
    assert set(lines) == {"cp1-cp2", "cp1-cp3", "cp2-cp3", "cp1-w1", "cp2-w1", "cp3-w1"}
    pooled = sorted(
        ns / 1e6 for m in record.results if {m.key.node, m.key.peer} == {"cp1", "cp3"} for ns in m.data["samples_ns"]
    )
    assert lines["cp1-cp3"]["name"] == "cp1-cp3 (n=300)"
    assert lines["cp1-cp3"]["x"][0] == round(pooled[0], 6) and lines["cp1-cp3"]["x"][-1] == round(pooled[-1], 6)
    assert lines["cp1-cp3"]["y"][-1] == 100


def test_a_re_read_run_json_renders_the_same_page():
    record = judged_record()
    again = parse_run(runjson.dumps(record))
    assert html.render(again) == html.render(record)


def test_heatmap_at_1000_nodes_shows_every_measured_direction_compacted_or_raw():
    """A million positions, 3,000 measured: the figure holds those 3,000 (with their hover
    details) and the nodes once each, is built in seconds, and re-sorts slowest-first."""
    record = thousand_nodes()
    started = time.monotonic()
    matrix = html_data.rtt_matrix(record)
    assert matrix is not None and matrix.measured == 3000
    assert matrix.nodes[:5] == ("cp1", "cp2", "cp3", "cp4", "cp5") and matrix.nodes[5:8] == ("w1", "w2", "w3")
    assert matrix.worst_first[:2] == ("cp3", "w1")
    fragment = html_figures.heatmap(matrix, 0.015)
    assert time.monotonic() - started < 30
    (trace,) = figure_data(fragment, "rtt-heatmap")
    cells = heatmap_cells(trace)
    assert set(cells) == {(m.key.node, m.key.peer) for m in record.results}
    assert sum("histogram_ns" in m.data for m in record.results) == 3000 - 9  # the control planes' 9 stay raw
    assert cells[("cp3", "w1")] == 40.0  # read off its histogram: exact at the minimum and maximum
    assert 0.2 * 0.98 <= min(cells.values()) and max(v for k, v in cells.items() if k != ("cp3", "w1")) <= 2.0 * 1.02
    assert len(trace["z"]) == 1000 + 3000  # the nodes once (no value), then the measured cells
    detail = dict(zip(zip(trace["y"], trace["x"], strict=True), trace["customdata"], strict=True))
    assert detail[("w1", "w2")][1:] == [20.0, 20]  # loss %, samples: hover details at any size
    assert len(fragment) < 600_000  # a million positions sent as "null" were 5 MB


def test_rtt_distributions_count_compacted_directions():
    """At 1,000 nodes the worker pairs keep histograms only: the pooled lines count them all."""
    groups = {line.name: line for line in html_data.rtt_cdfs(thousand_nodes())}
    # 15 directions from the control planes, 6 to them (w993..w995 wrap around): the rest are workers'
    assert groups["worker to worker"].count == (3000 - 15 - 6) * 20
    assert sum(line.count for line in groups.values()) == 3000 * 20
    line = groups["worker to worker"]
    assert 0.2e-3 * 0.98 <= line.values[0] and line.values[-1] <= 2.0e-3 * 1.02 and line.shares[-1] == 1.0


def test_node_facts_and_no_node_probe_note():
    record = judged_record()
    text = text_of(html.render(record))
    assert "did not include the node probe" in text
    for node in record.nodes:
        assert node.address in text


def test_many_pairs_are_pooled_by_group_within_the_bucket_resolution():
    record = judged_record(5, 2)  # 21 pairs: more than one line each would be readable
    groups = {line.name: line for line in html_data.rtt_cdfs(record)}
    assert set(groups) == {"control plane to control plane", "control plane to worker", "worker to worker"}
    samples = sorted(
        ns / 1e9
        for m in record.results
        if m.key.node.startswith("cp") and (m.key.peer or "").startswith("cp")
        for ns in m.data["samples_ns"]
    )
    line = groups["control plane to control plane"]
    assert line.count == len(samples) == 20 * 150
    median = next(v for v, share in zip(line.values, line.shares, strict=True) if share >= 0.5)
    assert abs(median - samples[len(samples) // 2]) <= 0.04 * samples[len(samples) // 2]
