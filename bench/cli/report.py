"""`talbench report RUN_DIR [--scenario NAME] [--output FILE]`: render report.html again from a
run's run.json, or judge the run's stored raw results against another scenario's thresholds and
render that.  Part of the CLI (bench/cli/__init__.py maps what it raises to exit codes: a missing,
damaged or unknown run.json is one line and exit 2)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from talbench.agents.params import Params
from talbench.bench import scenario as scenario_files
from talbench.bench.errors import CouldNotRun, ScenarioError, UsageError
from talbench.bench.judge import judge
from talbench.bench.model import RunRecord
from talbench.bench.plan import make_plan
from talbench.bench.probes import default_drivers
from talbench.bench.probes.base import ProbeDriver
from talbench.bench.report.files import write_atomically
from talbench.bench.report.html import page
from talbench.bench.report.runjson import write
from talbench.bench.report.runjson.read import read_run, run_file
from talbench.bench.run import exit_code, metrics_of, pair_budgets


def add_parser(commands: Any) -> None:
    report_p = commands.add_parser(
        "report",
        help="render report.html from a run's run.json, or re-judge it against another scenario",
    )
    report_p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run's directory (or its run.json)")
    report_p.add_argument(
        "--scenario",
        default=None,
        help="judge the stored raw results against this scenario's thresholds (built-in name or YAML file); "
        "writes report-<scenario>.html unless --output",
    )
    report_p.add_argument("--output", type=Path, default=None, metavar="FILE", help="where to write the page")


def rejudge(record: RunRecord, scenario_name: str) -> tuple[RunRecord, tuple[str, ...]]:
    """The run judged against ``scenario_name``'s checks, and the checks left out because their
    probe was not part of this run (they would be no_data by construction, not by finding)."""
    drivers = default_drivers()
    metrics = metrics_of(drivers)
    scenario = scenario_files.load(scenario_files.resolve(scenario_name), metrics)
    ran = {m.key.probe for m in record.results} | {check.probe for check in record.checks}
    checks = tuple(check for check in scenario.checks if check.probe in ran)
    skipped = tuple(check.name for check in scenario.checks if check.probe not in ran)
    if not checks:
        raise UsageError(
            f"scenario {scenario.name} judges no probe that run {record.run_id} measured "
            f"({', '.join(sorted(ran)) or 'none'})"
        )
    plan = make_plan(checks, record.nodes, metrics, stored_budgets(record, drivers), target=record.target)
    verdicts = judge(plan, {m.key: m for m in record.results}, record.nodes, metrics)
    return dataclasses.replace(record, scenario=scenario, checks=checks, verdicts=verdicts), skipped


def stored_budgets(record: RunRecord, drivers: Mapping[str, ProbeDriver[Params]]) -> dict[str, int]:
    """The pair budgets the run planned with, from the settings run.json keeps.  A probe whose
    stored settings lack a field of today's model was run by an older talbench, before budgets:
    it measured every pair, and is re-planned that way."""
    stored = record.metadata.get("settings") or {}
    settings = {}
    for probe, raw in stored.items() if isinstance(stored, Mapping) else ():
        if (
            probe in drivers
            and isinstance(raw, Mapping)
            and set(drivers[probe].settings_model.model_fields) <= set(raw)
        ):
            try:
                settings[probe] = drivers[probe].settings(raw, quick=False)
            except ScenarioError:
                continue
    return pair_budgets(drivers, settings)


def _rejudge_note(original: RunRecord, scenario_path: str, skipped: tuple[str, ...]) -> str:
    note = (
        f"Re-judged by 'talbench report' against scenario file {scenario_path}: the raw results of run "
        f"{original.run_id} (measured with scenario {original.scenario.name}) against its thresholds."
    )
    if skipped:
        note += f" Left out, their probe did not run: {', '.join(skipped)}."
    return note


def cmd_report(args: argparse.Namespace, err: Console) -> int:
    source = run_file(args.run_dir)
    record = read_run(args.run_dir)  # RunFileError (exit 2) names the file and what is wrong
    note = ""
    name = page.REPORT_FILE
    if args.scenario:
        original = record
        record, skipped = rejudge(record, args.scenario)
        note = _rejudge_note(original, record.scenario.path, skipped)
        name = f"report-{re.sub(r'[^A-Za-z0-9_.-]+', '-', record.scenario.name)}.html"
    target = args.output or source.parent / name
    try:
        write_atomically(target, page.render(record, note=note))
    except OSError as exc:
        raise CouldNotRun(f"cannot write {target}: {exc.strerror}", hint="check --output") from exc
    code = exit_code(record.verdicts)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(write.summary(record).items()))
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"{'FAILED' if code else 'PASSED'}: {counts}.  Report: {target}", markup=False)
    return code
