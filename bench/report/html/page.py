"""report.html: one self-contained page per run, written beside run.json and junit.xml.

It holds the verdict summary, every check with its observed values, threshold and source, the
RTT heatmap, latency CDFs for RTT, fdatasync and etcd, the nodes' CPU over the run with the
probe phases, and the node facts.  Plots are plotly's; plotly.js is inlined once, so the page
fetches nothing (it opens offline and attaches to a CI job).  ``render`` is pure: the caller
writes the file (bench/report/files.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from plotly.offline import get_plotlyjs

from talbench.bench.model import Check, RunRecord, Status, Verdict
from talbench.bench.report.html import data, figures, tables
from talbench.bench.units import Dimension

REPORT_FILE = "report.html"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 24px 48px; color: #1d1d1f; }
h1 { font-size: 22px; margin: 20px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .note { color: #6b4e00; background: #fff6d6; padding: 6px 10px; border-radius: 4px; }
.verdict { font-size: 20px; font-weight: 600; margin: 14px 0; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; margin: 1px 2px;
         color: #fff; white-space: nowrap; }
.badge.pass { background: #2e7d32; } .badge.warn { background: #b7791f; } .badge.fail { background: #c62828; }
.badge.no_data { background: #6a1b9a; } .badge.invalid { background: #8e24aa; } .badge.info { background: #1565c0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f7; position: sticky; top: 0; }
.source { color: #555; font-size: 12px; max-width: 520px; }
small { color: #666; } code { font-size: 12px; }
details.check { margin: 6px 0; } details.check > summary { cursor: pointer; padding: 4px 0; }
nav a { margin-right: 14px; }
"""


_NAV = (
    '<nav><a href="#summary">summary</a><a href="#rtt">RTT</a><a href="#latency">latency</a>'
    '<a href="#time">over time</a><a href="#checks">checks</a><a href="#nodes">nodes</a></nav>'
)


def _verdicts_by_check(verdicts: Sequence[Verdict]) -> dict[str, list[Verdict]]:
    grouped: dict[str, list[Verdict]] = {}
    for v in verdicts:
        grouped.setdefault(v.check, []).append(v)
    return grouped


def _limit(check: Check) -> float | None:
    limit = check.fail or check.warn
    return limit.value if limit is not None and limit.dimension is Dimension.DURATION else None


def _thresholds(checks: Sequence[Check], probe: str) -> dict[str, float]:
    """``{"control-plane-rtt < 15ms": 0.015}``: the duration limits of a probe's checks."""
    found: dict[str, float] = {}
    for check in checks:
        value = _limit(check)
        latency = not any(word in check.metric for word in ("stddev", "recommended", "jitter"))
        if check.probe == probe and latency and value is not None and value not in found.values():
            limit = check.fail or check.warn
            found[f"{check.name} {limit}"] = value
    return found


def _heatmap_threshold(checks: Sequence[Check]) -> float | None:
    """The strictest RTT p99 limit of the run (the control-plane one, usually)."""
    limits = [value for check in checks if check.metric == "rtt.p99" and (value := _limit(check)) is not None]
    return min(limits, default=None)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _overall(verdicts: Sequence[Verdict]) -> str:
    blocking = [v for v in verdicts if v.status.blocks]
    if not verdicts:
        return '<p class="verdict">NOT JUDGED: the run produced no verdict.</p>'
    if blocking:
        return f'<p class="verdict">FAILED: {len(blocking)} of {len(verdicts)} verdicts block (fail, no data or invalid).</p>'
    return f'<p class="verdict">PASSED: nothing blocks ({len(verdicts)} verdicts).</p>'


def render(record: RunRecord, *, note: str = "") -> str:
    """The whole page.  ``note`` says how it was made when not by the run itself (a re-judge)."""
    by_check = _verdicts_by_check(record.verdicts)
    meta = record.metadata
    counts = " ".join(tables.badge(s, f"{n} {s.value}") for s, n in tables.counts(record.verdicts).items())
    header = (
        f"<h1>talbench: {escape(record.scenario.name)} on {escape(record.target)}</h1>"
        f'<p class="meta">run <code>{escape(record.run_id)}</code>, {_when(record.started)}, '
        f"{record.ended - record.started:.0f} s, {len(record.nodes)} nodes, "
        f"talbench {escape(str(meta.get('tool_version', '?')))}</p>"
    )
    if record.quick:
        header += '<p class="note">QUICK run: shortened durations, the figures are indicative.</p>'
    if note:
        header += f'<p class="note">{escape(note)}</p>'
    sections = [
        header,
        _NAV,
        f'<h2 id="summary">Verdicts</h2>{_overall(record.verdicts)}<p>{counts}</p>',
        tables.summary_table(record, by_check),
        _rtt_section(record),
        _latency_section(record),
        _time_section(record),
        f'<h2 id="checks">Every check</h2>{tables.check_sections(record, by_check)}',
        tables.failed_results(record.results),
        f'<h2 id="nodes">Nodes</h2>{tables.node_table(record)}',
        _unready(record),
    ]
    body = "\n".join(s for s in sections if s)
    title = f"talbench {record.scenario.name} {record.run_id}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        f"</head><body>\n{body}\n</body></html>\n"
    )


def _rtt_section(record: RunRecord) -> str:
    matrix = data.rtt_matrix(record)
    if matrix is None:
        return '<h2 id="rtt">RTT</h2><p>This run measured no round trips.</p>'
    threshold = _heatmap_threshold(record.checks)
    limit = "" if threshold is None else f" Colour turns red at the strictest RTT p99 limit, {threshold * 1e3:g} ms."
    return (
        '<h2 id="rtt">RTT p99 per direction</h2>'
        f"<p>{matrix.measured} measured directions among {len(matrix.nodes)} nodes, control planes first "
        f"({matrix.control_planes}), the line marks the groups.{limit} Drag to zoom, double-click to reset; "
        "the buttons re-sort both axes.</p>" + figures.heatmap(matrix, threshold)
    )


def _latency_section(record: RunRecord) -> str:
    parts = ['<h2 id="latency">Latency distributions</h2>']
    plots = (
        ("rtt", data.rtt_cdfs(record), _rtt_title(record)),
        ("fsync", data.fsync_cdfs(record), "fdatasync, fio's etcd recipe (fio's latency histogram)"),
        ("etcd", data.etcd_cdfs(record), "etcd: client writes under load, members' WAL fsync and backend commit"),
    )
    for probe, cdfs, title in plots:
        if cdfs:
            thresholds = _thresholds(record.checks, probe)
            parts.append(figures.cdf(cdfs, title, thresholds, div_id=f"cdf-{probe}"))
    if len(parts) == 1:
        parts.append("<p>This run holds no latency samples (no rtt, fsync or etcd results).</p>")
    return "\n".join(parts)


def _rtt_title(record: RunRecord) -> str:
    compacted = any("histogram_ns" in m.data for m in record.results if m.key.probe == "rtt")
    how = "raw samples, and histograms where the run kept only those" if compacted else "raw samples"
    return f"RTT, both directions of a pair pooled ({how})"


def _time_section(record: RunRecord) -> str:
    series = data.cpu_series(record)
    head = '<h2 id="time">Over time</h2>'
    if not series:
        return head + "<p>No node samples over time in this run (the node probe did not run).</p>"
    return (
        head + "<p>CPU busy per node over the run, with each probe's phase shaded: the etcd load and fio's "
        "fdatasync recipe show as their phases. fio's histogram and the etcd load's histogram carry no "
        "per-sample timestamps, so their latencies are plotted as distributions above, not over time.</p>"
        + figures.over_time(series, record.timings, record.started, "cpu-over-time")
    )


def _unready(record: RunRecord) -> str:
    if not record.unready:
        return ""
    items = "".join(
        f"<li>{tables.badge(Status.NO_DATA, node)} {escape(reason)}</li>"
        for node, reason in sorted(record.unready.items())
    )
    return f"<h3>Agents that never became ready</h3><ul>{items}</ul>"
