"""A comparison as JSON and as a small self-contained HTML page.  Pure: builds strings, no I/O
(the CLI writes them); the terminal table is bench/cli/compare.py's."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from talbench.bench.compare.changes import Change, Comparison, RunInfo
from talbench.bench.units import Dimension, format_value

COMPARE_SCHEMA = "talbench/compare/v1"


def value_text(value: float | None, dimension: Dimension) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "no reply" if value > 0 else "-inf"
    return format_value(value, dimension)


def change_text(change: Change) -> str:
    """``+12.3 ms (+8.2 %)``."""
    difference = change.difference
    if difference is None:
        return "-"
    sign = "+" if difference > 0 else ("-" if difference < 0 else "±")
    text = sign + value_text(abs(difference), change.dimension)
    relative = change.relative
    if relative is not None and math.isfinite(relative):
        text += f" ({relative * 100:+.1f} %)"
    elif relative is not None:
        text += " (from 0)"
    return text


def interval_text(change: Change) -> str:
    if change.interval is None:
        return "-"
    low, high = change.interval.low, change.interval.high
    return f"[{_signed(low, change.dimension)}, {_signed(high, change.dimension)}]"


def _signed(value: float, dimension: Dimension) -> str:
    return ("-" if value < 0 else "+") + value_text(abs(value), dimension)


def _number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _run(info: RunInfo) -> dict[str, Any]:
    return {"run_id": info.run_id, "scenario": info.scenario, "target": info.target, "quick": info.quick}


def change_dict(change: Change) -> dict[str, Any]:
    return {
        "check": change.check,
        "metric": change.metric,
        "subject": str(change.subject),
        "nodes": list(change.subject.nodes),
        "unit": change.dimension.value,
        "lower_is_better": change.lower_is_better,
        "base": _number(change.base),
        "new": _number(change.new),
        "base_status": change.base_status.value if change.base_status else None,
        "new_status": change.new_status.value if change.new_status else None,
        "difference": _number(change.difference),
        "relative": _number(change.relative),
        "interval": None if change.interval is None else [change.interval.low, change.interval.high],
        "method": change.method,
        "samples": list(change.samples),
        "outcome": change.outcome.value,
        "reason": change.reason,
    }


def to_dict(comparison: Comparison) -> dict[str, Any]:
    settings = comparison.settings
    return {
        "schema": COMPARE_SCHEMA,
        "base": _run(comparison.base),
        "new": _run(comparison.new),
        "settings": {
            "threshold": settings.threshold,
            "confidence": settings.confidence,
            "resamples": settings.resamples,
            "seed": settings.seed,
        },
        "summary": comparison.counts(),
        "regressions": len(comparison.regressions),
        "notes": list(comparison.notes),
        "changes": [change_dict(c) for c in comparison.changes],
    }


def dumps(comparison: Comparison) -> str:
    return json.dumps(to_dict(comparison), indent=1, allow_nan=False) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.regression td{background:#fdd}
tr.improvement td{background:#dfd}
tr.changed td{background:#ffd}
tr.not_compared td,tr.only_base td,tr.only_new td{color:#777}
.summary{margin:1em 0}
"""


def html_page(comparison: Comparison) -> str:
    """One self-contained page (no script, no fetch): the runs, the rule, and every change."""
    e = html.escape
    base, new = comparison.base, comparison.new
    regressions = len(comparison.regressions)
    title = f"talbench compare {base.run_id} -> {new.run_id}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(comparison.counts().items()))
    rule = (
        f"regression: the verdict got worse, or the figure is more than {comparison.settings.threshold:.0%} worse "
        f"and its {comparison.settings.confidence:.0%} interval of NEW - BASE excludes 0"
    )
    rows = []
    for c in comparison.changes:
        cells = [
            e(c.check),
            e(str(c.subject)),
            f'<td class="num">{e(value_text(c.base, c.dimension))}</td>',
            f'<td class="num">{e(value_text(c.new, c.dimension))}</td>',
            f'<td class="num">{e(change_text(c))}</td>',
            f'<td class="num">{e(interval_text(c))}</td>',
            e(" -> ".join(s.value for s in (c.base_status, c.new_status) if s is not None)),
            e(c.outcome.value),
            e("; ".join(part for part in (c.reason, c.method) if part)),
        ]
        tds = "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in cells)
        rows.append(f'<tr class="{e(c.outcome.value)}">{tds}</tr>')
    notes = "".join(f"<li>{e(n)}</li>" for n in comparison.notes)
    interval = f"{comparison.settings.confidence * 100:g} % interval"
    headers = "".join(
        f"<th>{h}</th>" for h in ("check", "subject", "base", "new", "change", interval, "verdicts", "outcome", "why")
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{e(title)}</h1>\n"
        f"<p>BASE: {e(base.run_id)} ({e(base.scenario)} on {e(base.target)}{', quick' if base.quick else ''})<br>"
        f"NEW: {e(new.run_id)} ({e(new.scenario)} on {e(new.target)}{', quick' if new.quick else ''})</p>\n"
        f'<p class="summary" id="summary"><strong>{regressions} regression{"s" if regressions != 1 else ""}</strong>'
        f" ({e(counts)}). {e(rule)}.</p>\n"
        + (f"<ul>{notes}</ul>\n" if notes else "")
        + f'<table id="changes"><thead><tr>{headers}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>\n</body></html>\n"
    )
