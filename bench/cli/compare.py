"""`talbench compare BASE NEW`: what changed between two runs (bench/compare/changes.py decides, this
module reads the files, prints the table or JSON and writes the HTML page).  Exit 1 when there is
any regression, 0 otherwise; 2 for a file it cannot read (bench/cli/__init__.py maps the error)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from talbench.bench.compare.changes import CompareSettings, Comparison, Outcome, compare
from talbench.bench.compare.render import change_text, dumps, html_page, interval_text, value_text
from talbench.bench.compare.stats import MAX_RESAMPLES
from talbench.bench.errors import UsageError
from talbench.bench.probes import default_drivers
from talbench.bench.report.files import write_atomically
from talbench.bench.report.runjson.read import read_run
from talbench.bench.units import Dimension, UnitError, parse_quantity

STYLE = {
    Outcome.REGRESSION: "bold red",
    Outcome.IMPROVEMENT: "green",
    Outcome.UNCHANGED: "",
    Outcome.CHANGED: "yellow",
    Outcome.NOT_COMPARED: "magenta",
    Outcome.ONLY_BASE: "dim",
    Outcome.ONLY_NEW: "dim",
}


def add_parser(commands: Any) -> None:
    """The `compare` subcommand (``commands`` is bench/cli/__init__.py's subparsers)."""
    p = commands.add_parser("compare", help="what changed between two runs; exit 1 on a regression")
    p.add_argument("base", type=Path, metavar="BASE", help="the earlier run: its directory or run.json")
    p.add_argument("new", type=Path, metavar="NEW", help="the later run: its directory or run.json")
    p.add_argument(
        "--threshold",
        default="10 %",
        help="relative change that counts as a regression when its interval excludes 0 (default: 10 %%)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default: 0.95)")
    p.add_argument(
        "--resamples",
        type=int,
        default=CompareSettings.resamples,
        help=f"bootstrap resamples, 100..{MAX_RESAMPLES} (default: {CompareSettings.resamples})",
    )
    p.add_argument(
        "--seed", type=int, default=CompareSettings.seed, help="bootstrap seed (fixed: same runs, same output)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--html", type=Path, default=None, metavar="FILE", help="also write a self-contained HTML page")
    p.add_argument("--all", action="store_true", help="table: also list the unchanged figures")


def settings_of(args: argparse.Namespace) -> CompareSettings:
    try:
        threshold = parse_quantity(args.threshold, Dimension.RATIO).value
    except UnitError as exc:
        raise UsageError(f"--threshold: {exc}") from None
    if not 0 <= threshold < 10:
        raise UsageError(f"--threshold {args.threshold} is outside 0 %..1000 %")
    if not 0.5 <= args.confidence < 1:
        raise UsageError(f"--confidence {args.confidence} is outside 0.5..1 (e.g. 0.95)")
    if not 100 <= args.resamples <= MAX_RESAMPLES:
        raise UsageError(f"--resamples {args.resamples} is outside 100..{MAX_RESAMPLES}")
    return CompareSettings(threshold=threshold, confidence=args.confidence, resamples=args.resamples, seed=args.seed)


def directions() -> dict[str, bool]:
    """lower_is_better of every metric this talbench knows."""
    return {m.name: m.lower_is_better for driver in default_drivers().values() for m in driver.metrics()}


def cmd_compare(args: argparse.Namespace, err: Console) -> int:
    settings = settings_of(args)
    base, new = read_run(args.base), read_run(args.new)
    comparison = compare(base, new, directions(), settings)
    if args.html is not None:
        try:
            write_atomically(args.html, html_page(comparison))
        except OSError as exc:
            raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    if args.format == "json":
        sys.stdout.write(dumps(comparison))
    else:
        render(comparison, Console(highlight=False), show_all=args.all)
    return 1 if comparison.regressions else 0


def render(comparison: Comparison, console: Console, *, show_all: bool = False) -> None:
    base, new = comparison.base, comparison.new
    table = Table(title=f"talbench compare {base.run_id} -> {new.run_id}", title_justify="left")
    interval = f"{comparison.settings.confidence * 100:g} % interval"
    for name in ("check", "subject", "base", "new", "change", interval, "outcome", "why"):
        right = name in ("base", "new", "change", interval)
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    hidden = 0
    for c in comparison.changes:
        if c.outcome is Outcome.UNCHANGED and not show_all:
            hidden += 1
            continue
        style = STYLE[c.outcome]
        outcome = f"[{style}]{c.outcome.value}[/]" if style else c.outcome.value
        why = "; ".join(part for part in (c.reason, c.method) if part)
        table.add_row(
            c.check,
            str(c.subject),
            value_text(c.base, c.dimension),
            value_text(c.new, c.dimension),
            change_text(c),
            interval_text(c),
            outcome,
            why,
        )
    if table.row_count:
        console.print(table)
    for note in comparison.notes:
        console.print(f"note: {note}", markup=False)
    regressions = len(comparison.regressions)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(comparison.counts().items()))
    shown = f"; {hidden} unchanged not listed (--all lists them)" if hidden else ""
    colour = "bold red" if regressions else "green"
    console.print(f"[{colour}]{regressions} regression{'s' if regressions != 1 else ''}[/] ({counts}){shown}")
