"""CronJob mode's history: each run compared with the previous one kept in the cluster.

A run with ``--keep-results N`` reads the summaries kept in its namespace (bench/kube/cronjob.py)
*before* it keeps its own, takes the newest one of the same scenario, and compares the two with
``talbench compare``'s rule in its value-only form (bench/compare/changes.py ``compare_verdicts``: a kept
summary holds verdicts, not raw samples).  A regression is then a verdict that got worse (pass ->
warn -> fail) or a pair that stopped answering; a figure that moved within its verdict is not one
(two values cannot tell a change from noise).  The regressions go into the run's summary
(``compared_with``, ``comparison``, ``regressions``), its output and its pushed metrics; they do
not change the exit code, which stays what the verdicts say.

The first run of a scenario finds no previous one; a previous summary that cannot be read
(damaged, truncated) is reported in one line and nothing is compared.  Pure apart from parsing
JSON text: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from talbench.bench.compare.changes import Change, RunInfo, compare_verdicts
from talbench.bench.model import RunRecord, Verdict
from talbench.bench.report.runjson.read import RunFileError, read_verdicts
from talbench.bench.report.runjson.write import json_number
from talbench.bench.units import format_value


@dataclass(frozen=True)
class Kept:
    """One summary kept in the cluster, as listed (newest first) by bench/kube/cronjob.py."""

    name: str  # the ConfigMap's name
    run_id: str  # its run-id label
    scenario: str | None  # its scenario label (None: kept by a talbench that set none, or not a label value)
    text: str | None  # the summary's JSON text (None: the ConfigMap holds none)


@dataclass(frozen=True)
class KeptRun:
    """A kept summary read back: enough of the run to compare with."""

    name: str
    info: RunInfo
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class History:
    """What a run's comparison with the previous kept run found."""

    line: str  # one line: what this run was compared with, or why it was not
    compared_with: str | None = None  # the previous run's id, when compared
    regressions: tuple[Change, ...] = ()

    def document(self) -> dict[str, Any]:
        """The summary's fields (``talbench run --format json`` and the kept ConfigMap)."""
        return {
            "compared_with": self.compared_with,
            "comparison": self.line,
            "regressions": [regression_dict(c) for c in self.regressions],
        }

    def lines(self) -> list[str]:
        """What the run prints after its table: the line, then one line per regression."""
        return [self.line, *(f"  regression: {regression_text(c)}" for c in self.regressions)]


def regression_dict(change: Change) -> dict[str, Any]:
    return {
        "check": change.check,
        "metric": change.metric,
        "subject": str(change.subject),
        "before": change.base_status.value if change.base_status else None,
        "after": change.new_status.value if change.new_status else None,
        "observed_before": json_number(change.base),
        "observed_after": json_number(change.new),
        "unit": change.dimension.value,
        "why": change.reason,
    }


def regression_text(change: Change) -> str:
    """``control-plane-rtt cp1-cp2: pass -> fail (1.2 ms -> 22 ms): verdict pass -> fail``."""
    before = change.base_status.value if change.base_status else "-"
    after = change.new_status.value if change.new_status else "-"
    values = f"{_value(change.base, change)} -> {_value(change.new, change)}"
    return f"{change.check} {change.subject}: {before} -> {after} ({values}): {change.reason}"


def _value(value: float | None, change: Change) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "no reply" if value > 0 else "-inf"
    return format_value(value, change.dimension)


def read_kept(kept: Kept) -> KeptRun:
    """The run a kept summary records; RunFileError (one line naming the ConfigMap) when damaged."""
    name = f"ConfigMap {kept.name}"
    if kept.text is None:
        raise RunFileError(f"{name}: holds no summary")
    try:
        doc = json.loads(kept.text)
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{name}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(doc, dict):
        raise RunFileError(f"{name}: not a talbench summary (the top level is not an object)")
    if doc.get("truncated"):
        raise RunFileError(f"{name}: truncated summary without verdicts ({doc['truncated']})")
    run_id, scenario = doc.get("run_id"), doc.get("scenario")
    if not isinstance(run_id, str) or not isinstance(scenario, str):
        raise RunFileError(f"{name}: damaged: 'run_id' and 'scenario' must be strings")
    info = RunInfo(run_id, scenario, str(doc.get("target") or ""), bool(doc.get("quick", False)))
    return KeptRun(kept.name, info, read_verdicts(doc, name))


def previous(kept: Sequence[Kept], scenario: str, run_id: str) -> KeptRun | RunFileError | None:
    """The newest kept run of ``scenario`` other than ``run_id`` (``kept`` is newest first), the
    error reading it, or None when there is none.  A summary labelled with another scenario is
    skipped unread; an unlabelled one is read to learn its scenario, and when it cannot be read it
    is taken as the previous run (nothing tells it apart)."""
    for item in kept:
        if item.run_id == run_id or (item.scenario is not None and item.scenario != scenario):
            continue
        try:
            found = read_kept(item)
        except RunFileError as exc:
            return exc
        if found.info.scenario == scenario and found.info.run_id != run_id:
            return found
    return None


def since(kept: Sequence[Kept], record: RunRecord, directions: Mapping[str, bool] | None = None) -> History:
    """``record`` compared with the previous kept run of its scenario (value-only)."""
    scenario = record.scenario.name
    before = previous(kept, scenario, record.run_id)
    if before is None:
        return History(f"no previous run of scenario {scenario} kept in the cluster: nothing to compare with")
    if isinstance(before, RunFileError):
        return History(f"not compared with the previous run: {before}")
    comparison = compare_verdicts(before.info, before.verdicts, RunInfo.of(record), record.verdicts, directions)
    regressions = comparison.regressions
    count = f"{len(regressions)} regression{'s' if len(regressions) != 1 else ''}"
    return History(f"compared with run {before.info.run_id}: {count}", before.info.run_id, regressions)
