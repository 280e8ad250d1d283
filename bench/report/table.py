"""The verdict table a person reads at the end of a run (rich)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from talbench.bench.model import RunRecord, Status
from talbench.bench.units import Dimension, format_value

STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.NO_DATA: "bold magenta",
    Status.INVALID: "magenta",
    Status.INFO: "cyan",
}


def observed_text(value: float | None, dimension: Dimension) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "no reply"
    return format_value(value, dimension)


def render(record: RunRecord, console: Console) -> None:
    title = f"talbench {record.scenario.name} on {record.target} - run {record.run_id}"
    if record.quick:
        title += " (QUICK: shortened durations, figures are indicative)"
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("check")
    table.add_column("subject")
    table.add_column("observed", justify="right")
    table.add_column("threshold")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for v in record.verdicts:
        detail = v.detail
        if v.status in (Status.NO_DATA, Status.INVALID):
            detail = v.message + (f"; {v.detail}" if v.detail else "")
        table.add_row(
            v.check,
            str(v.subject),
            observed_text(v.observed, v.dimension),
            v.threshold,
            f"[{STYLE[v.status]}]{v.status.value}[/]",
            detail,
        )
    console.print(table)
    for node, reason in sorted(record.unready.items()):
        console.print(f"[magenta]agent on {node} never became ready: {reason}[/]")
