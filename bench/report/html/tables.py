"""report.html's tables: the verdict summary, every check with its observed values, threshold
and source, and the node facts.  Plain escaped HTML strings; pure (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from talbench.bench.model import Check, Measurement, RunRecord, Status, Verdict
from talbench.bench.report.html.data import natural_key, ordered_nodes
from talbench.bench.units import Dimension, format_value

# Rows of one check's table before the rest is left to run.json (an all-pairs check on 1,000
# nodes has 499,500 subjects).  Blocking verdicts come first, so they are never the ones cut.
MAX_ROWS_PER_CHECK = 400
SEVERITY = (Status.FAIL, Status.NO_DATA, Status.INVALID, Status.WARN, Status.INFO, Status.PASS)


def observed_text(value: float | None, dimension: Dimension) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "no reply"
    return format_value(value, dimension)


def badge(status: Status, text: str | None = None) -> str:
    return f'<span class="badge {status.value}">{escape(text or status.value)}</span>'


def counts(verdicts: Iterable[Verdict]) -> dict[Status, int]:
    found: dict[Status, int] = {}
    for v in verdicts:
        found[v.status] = found.get(v.status, 0) + 1
    return {status: found[status] for status in SEVERITY if status in found}


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _worst(verdicts: Sequence[Verdict], lower_is_better: bool | None) -> Verdict | None:
    judged = [v for v in verdicts if v.observed is not None]
    if not judged:
        return None
    rank = {status: i for i, status in enumerate(SEVERITY)}
    if lower_is_better is False:
        return min(judged, key=lambda v: (rank[v.status], v.observed or 0.0))
    return min(judged, key=lambda v: (rank[v.status], -(v.observed if v.observed is not None else 0.0)))


def summary_table(record: RunRecord, by_check: Mapping[str, Sequence[Verdict]]) -> str:
    """One row per check: its verdict counts, worst observed value, threshold and source."""
    rows = []
    for check in record.checks:
        verdicts = by_check.get(check.name, ())
        worst = _worst(verdicts, _lower_is_better(verdicts))
        rows.append(
            (
                f'<a href="#check-{escape(check.name)}">{escape(check.name)}</a>',
                f"<code>{escape(check.metric)}</code><br><small>{escape(check.scope.value)}</small>",
                " ".join(badge(s, f"{n} {s.value}") for s, n in counts(verdicts).items()) or "-",
                "-"
                if worst is None
                else f"{escape(observed_text(worst.observed, worst.dimension))}"
                f"<br><small>{escape(str(worst.subject))}</small>",
                escape(verdicts[0].threshold if verdicts else _limits(check)),
                f'<div class="source">{escape(check.source)}</div>',
            )
        )
    return _table(("check", "metric / scope", "verdicts", "worst observed", "threshold", "source"), rows, "summary")


def _lower_is_better(verdicts: Sequence[Verdict]) -> bool | None:
    """Read off the threshold text the judge wrote (``< 15ms`` or ``>= 90 %``)."""
    for v in verdicts:
        if v.threshold.startswith(("<", "warn >=")):
            return True
        if v.threshold.startswith((">=", "warn <")):
            return False
    return None


def _limits(check: Check) -> str:
    parts = [f"fail {check.fail}" if check.fail else "", f"warn {check.warn}" if check.warn else ""]
    return ", ".join(p for p in parts if p) or "report only"


def check_sections(record: RunRecord, by_check: Mapping[str, Sequence[Verdict]]) -> str:
    """Every check with every subject's verdict: observed value, threshold, message, detail."""
    rank = {status: i for i, status in enumerate(SEVERITY)}
    sections = []
    for check in record.checks:
        verdicts = sorted(by_check.get(check.name, ()), key=lambda v: (rank[v.status], natural_key(str(v.subject))))
        shown = verdicts[:MAX_ROWS_PER_CHECK]
        rows = [
            (
                escape(str(v.subject)),
                badge(v.status),
                escape(observed_text(v.observed, v.dimension)),
                escape(v.threshold),
                escape(v.message)
                + (f"<br><small>{escape(v.detail)}</small>" if v.detail else "")
                + (f"<br><small>host: {escape(v.context)}</small>" if v.context else ""),
            )
            for v in shown
        ]
        more = (
            f'<p class="note">{len(verdicts) - len(shown)} more subjects (all passing or reported) are in run.json.</p>'
            if len(verdicts) > len(shown)
            else ""
        )
        blocking = any(v.status.blocks for v in verdicts)
        head = " ".join(badge(s, f"{n} {s.value}") for s, n in counts(verdicts).items())
        sections.append(
            f'<details id="check-{escape(check.name)}" class="check"{" open" if blocking else ""}>'
            f"<summary><b>{escape(check.name)}</b> <code>{escape(check.metric)}</code> {head}</summary>"
            f'<p class="source"><b>Threshold</b> {escape(verdicts[0].threshold if verdicts else _limits(check))}. '
            f"<b>Source</b>: {escape(check.source)}</p>"
            + _table(("subject", "verdict", "observed", "threshold", "message / detail"), rows, "verdicts")
            + more
            + "</details>"
        )
    return "\n".join(sections)


def _size(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_value(float(value), Dimension.BYTES)
    return "-"


def _disk(facts: Mapping[str, Any]) -> str:
    etcd = facts.get("etcd_dir") or facts.get("data_dir") or {}
    disks = etcd.get("disks") or []
    names = ", ".join(
        f"{d.get('name')} ({d.get('model') or d.get('media') or '?'}, {_size(d.get('size_bytes'))}"
        + (", NVMe" if d.get("nvme") else "")
        + ")"
        for d in disks
        if isinstance(d, Mapping)
    )
    where = etcd.get("path")
    return f"{names or '-'}" + (f" for {where}" if where else "")


def node_table(record: RunRecord) -> str:
    facts_of: dict[str, Mapping[str, Any]] = {}
    for m in record.results:
        if m.key.probe == "node" and m.ok:
            facts_of[m.key.node] = m.data.get("facts") or {}
    rows = []
    for node in ordered_nodes(record.nodes):
        facts = facts_of.get(node.name, {})
        rows.append(
            (
                escape(node.name),
                escape(node.role.value),
                escape(node.address),
                escape(str(facts.get("cpus", "-")))
                + (f"<br><small>{escape(str(facts['cpu_model']))}</small>" if facts.get("cpu_model") else ""),
                escape(_size(facts.get("memory_bytes"))),
                escape(_disk(facts)) if facts else "-",
                escape(" ".join(str(facts.get(k)) for k in ("os", "kernel", "arch") if facts.get(k)) or "-"),
                escape(", ".join(node.taints) or "-"),
                escape(record.unready.get(node.name, "ready")),
            )
        )
    note = (
        ""
        if facts_of
        else '<p class="note">This run did not include the node probe: facts are from the dispatcher only.</p>'
    )
    return note + _table(
        ("node", "role", "address", "CPUs", "memory", "etcd disk", "OS / kernel / arch", "taints", "agent"),
        rows,
        "nodes",
    )


def failed_results(results: Sequence[Measurement]) -> str:
    """Results that came back as errors, with the error (the judge says no_data for them)."""
    failed = [m for m in results if not m.ok]
    if not failed:
        return ""
    rows = [(escape(str(m.key)), escape(m.error_kind or "error"), escape(m.error or "")) for m in failed]
    return "<h3>Results that failed</h3>" + _table(("result", "kind", "error"), rows, "verdicts")
