"""`talbench compare`: what changed between two runs, per check and subject.  Pure: no I/O.

For every (check, subject) judged in both runs the change is NEW - BASE of the judged figure (the
verdicts' ``observed``), with a confidence interval from the stored raw results where they hold
the samples the figure was computed from (bench/compare/stats.py says how):

RTT percentiles from the pooled ``samples_ns`` of both directions; fsync percentiles from fio's
``sync.lat`` or ``write.clat`` histogram; RTT loss from probes sent and answered (a difference
of two proportions).  Any other figure is compared by value only, and the change says so.

**The regression rule.**  A change is a regression when

1. the verdict got worse (pass -> warn -> fail): the scenario's own limits say so; or
2. the figure moved in the metric's bad direction (latency up, throughput down: the metric's
   ``lower_is_better``) by more than ``threshold`` of BASE's value (default 10 %) and, for a
   duration, by at least ``min_duration`` (0.5 ms: a 0.08 ms step on a 0.17 ms path is 50 % and
   real, but no latency limit cares), *and* its confidence interval excludes zero on that side.

A figure without samples is never a regression by rule 2 alone (two values cannot tell a change
from noise: ``changed``).  A subject ``invalid`` or ``no_data`` in either run is ``not_compared``;
a pair that answered in BASE and not at all in NEW is a regression.  Subjects judged in one run
only are listed, not flagged.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from talbench.bench.compare.stats import Distribution, Interval, Percentile, bootstrap_difference, newcombe_difference
from talbench.bench.model import Measurement, ResultKey, RunRecord, Status, Subject, Verdict
from talbench.bench.units import Dimension


class Outcome(str, Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    UNCHANGED = "unchanged"  # within the threshold, or the interval holds zero
    CHANGED = "changed"  # beyond the threshold but without samples to tell it from noise
    NOT_COMPARED = "not_compared"  # no trustworthy figure on one side
    ONLY_BASE = "only_base"
    ONLY_NEW = "only_new"


@dataclass(frozen=True)
class CompareSettings:
    threshold: float = 0.10  # relative change (of BASE's value) beyond which a change counts
    min_duration: float = 0.0005  # seconds: a smaller change of a duration never counts
    confidence: float = 0.95
    resamples: int = 1000  # a 95 % percentile interval wants about 1000 (Efron & Tibshirani 1993, ch. 13)
    seed: int = 20260101


@dataclass(frozen=True)
class Change:
    check: str
    metric: str
    subject: Subject
    dimension: Dimension
    lower_is_better: bool | None  # None: the direction is unknown (a metric this talbench lacks)
    base: float | None
    new: float | None
    base_status: Status | None
    new_status: Status | None
    interval: Interval | None  # of NEW - BASE, in the metric's base unit
    method: str  # how the interval was computed, or why there is none
    samples: tuple[int, int]  # (BASE, NEW) sample counts behind the interval
    outcome: Outcome
    reason: str

    @property
    def difference(self) -> float | None:
        if self.base is None or self.new is None or not (math.isfinite(self.base) and math.isfinite(self.new)):
            return None
        return self.new - self.base

    @property
    def relative(self) -> float | None:
        difference = self.difference
        if difference is None or self.base is None:
            return None
        if self.base == 0:
            return 0.0 if difference == 0 else math.copysign(math.inf, difference)
        return difference / abs(self.base)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    scenario: str
    target: str
    quick: bool

    @classmethod
    def of(cls, record: RunRecord) -> RunInfo:
        return cls(record.run_id, record.scenario.name, record.target, record.quick)


@dataclass(frozen=True)
class Comparison:
    base: RunInfo
    new: RunInfo
    settings: CompareSettings
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.outcome is Outcome.REGRESSION)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.outcome.value] = counts.get(change.outcome.value, 0) + 1
        return counts


# ---- where the samples of a figure are stored -----------------------------------------------

# metric -> (where its samples are, the statistic the check judges)
PERCENTILES: Mapping[str, tuple[str, Percentile]] = MappingProxyType(
    {
        "rtt.p50": ("rtt", Percentile(50)),
        "rtt.p90": ("rtt", Percentile(90)),
        "rtt.p99": ("rtt", Percentile(99)),
        "fsync.p50": ("fsync.sync", Percentile(50, "first")),
        "fsync.p90": ("fsync.sync", Percentile(90, "first")),
        "fsync.p99": ("fsync.sync", Percentile(99, "first")),
        "fsync.p999": ("fsync.sync", Percentile(99.9, "first")),
        "fsync.write_p99": ("fsync.write", Percentile(99, "first")),
    }
)
PROPORTIONS = frozenset({"rtt.loss"})


@dataclass(frozen=True)
class Evidence:
    """What one run stores behind one figure: a distribution, a proportion, or nothing."""

    distribution: Distribution | None = None
    events: int = 0
    trials: int = 0

    @property
    def count(self) -> int:
        return self.distribution.count if self.distribution is not None else self.trials


def _keys(metric: str, subject: Subject) -> tuple[ResultKey, ...]:
    probe = metric.split(".", 1)[0]
    if len(subject.nodes) == 2:
        a, b = subject.nodes
        return (ResultKey(probe, a, b), ResultKey(probe, b, a))
    if len(subject.nodes) == 1:
        return (ResultKey(probe, subject.nodes[0]),)
    return ()


def _histogram(data: Mapping[str, Any], path: tuple[str, ...]) -> dict[float, int] | None:
    block: Any = data
    for step in path:
        block = block.get(step) if isinstance(block, Mapping) else None
    if not isinstance(block, Mapping) or not block:
        return None
    return {float(value) / 1e9: int(count) for value, count in block.items()}


def evidence(metric: str, subject: Subject, results: Mapping[ResultKey, Measurement]) -> Evidence | None:
    """The raw results behind ``metric`` for ``subject``, or None when none are stored."""
    found = [results[k] for k in _keys(metric, subject) if k in results and results[k].ok]
    if not found:
        return None
    if metric in PROPORTIONS:
        sent = sum(int(m.data.get("sent", 0)) for m in found)
        received = sum(int(m.data.get("received", 0)) for m in found)
        return Evidence(events=sent - received, trials=sent) if sent > 0 else None
    if metric not in PERCENTILES:
        return None
    source, _ = PERCENTILES[metric]
    if source == "rtt":
        samples = [ns / 1e9 for m in found for ns in m.data.get("samples_ns", ())]
        return Evidence(Distribution.of_samples(samples)) if samples else None
    path = ("sync", "lat", "bins_ns") if source == "fsync.sync" else ("write", "clat", "bins_ns")
    bins = _histogram(found[0].data, path)
    return Evidence(Distribution.of_histogram(bins)) if bins else None


# ---- comparing -------------------------------------------------------------------------------

_RANK = MappingProxyType({Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2})
_UNJUDGED = (Status.NO_DATA, Status.INVALID)


def direction(verdict: Verdict, directions: Mapping[str, bool]) -> bool | None:
    """Whether lower is better for the verdict's metric: from the metrics talbench knows, else from
    the threshold text the run recorded ("< 15ms" or ">= 90 %")."""
    if verdict.metric in directions:
        return directions[verdict.metric]
    if verdict.threshold.startswith("<"):
        return True
    if verdict.threshold.startswith(">"):
        return False
    return None


def _interval(
    metric: str, base: Evidence | None, new: Evidence | None, settings: CompareSettings, seed: int
) -> tuple[Interval | None, str]:
    if metric.endswith(".max"):
        return None, "values only: a maximum has no bootstrap interval"
    if base is None or new is None or not base.count or not new.count:
        return None, "values only: no raw samples stored for this figure"
    if metric in PROPORTIONS:
        interval = newcombe_difference(base.events, base.trials, new.events, new.trials, confidence=settings.confidence)
        return interval, f"Newcombe score interval, {settings.confidence:.0%}"
    if base.distribution is None or new.distribution is None:
        return None, "values only: no raw samples stored for this figure"
    statistic = PERCENTILES[metric][1]
    interval = bootstrap_difference(
        statistic,
        base.distribution,
        new.distribution,
        resamples=settings.resamples,
        confidence=settings.confidence,
        seed=seed,
    )
    return interval, f"bootstrap of p{statistic.q:g}, {settings.resamples} resamples, {settings.confidence:.0%}"


def _decide(change: Change, settings: CompareSettings) -> tuple[Outcome, str]:
    base, new = change.base_status, change.new_status
    for status, side in ((base, "BASE"), (new, "NEW")):
        if status is not None and status in _UNJUDGED:
            return Outcome.NOT_COMPARED, f"{status.value} in {side}"
    if change.base is None or change.new is None:
        return Outcome.NOT_COMPARED, "no value in " + ("BASE" if change.base is None else "NEW")
    if not math.isfinite(change.new) or not math.isfinite(change.base):
        if change.lower_is_better and math.isfinite(change.base) and change.new == math.inf:
            return Outcome.REGRESSION, "no replies in NEW"
        return Outcome.NOT_COMPARED, "unbounded value"
    if base is not None and new is not None and base in _RANK and new in _RANK and base != new:
        worse = _RANK[new] > _RANK[base]
        return (Outcome.REGRESSION if worse else Outcome.IMPROVEMENT), f"verdict {base.value} -> {new.value}"
    relative = change.relative or 0.0
    if change.lower_is_better is None:
        return Outcome.UNCHANGED, "direction unknown: not judged"
    worse_by = relative if change.lower_is_better else -relative
    beyond = abs(worse_by) > settings.threshold
    if not beyond:
        return Outcome.UNCHANGED, f"within {settings.threshold:.0%}"
    if change.dimension is Dimension.DURATION and abs(change.difference or 0.0) < settings.min_duration:
        return Outcome.UNCHANGED, f"changed by less than {settings.min_duration * 1e3:g} ms"
    if change.interval is None:
        return Outcome.CHANGED, f"{'worse' if worse_by > 0 else 'better'}; no samples to tell it from noise"
    bad_side = change.interval.low > 0 if change.lower_is_better else change.interval.high < 0
    good_side = change.interval.high < 0 if change.lower_is_better else change.interval.low > 0
    if worse_by > 0 and bad_side:
        return Outcome.REGRESSION, f"worse by more than {settings.threshold:.0%}, interval excludes 0"
    if worse_by < 0 and good_side:
        return Outcome.IMPROVEMENT, f"better by more than {settings.threshold:.0%}, interval excludes 0"
    return Outcome.UNCHANGED, "interval includes 0"


def _change(
    base: Verdict,
    new: Verdict,
    base_results: Mapping[ResultKey, Measurement],
    new_results: Mapping[ResultKey, Measurement],
    directions: Mapping[str, bool],
    settings: CompareSettings,
) -> Change:
    seed = settings.seed ^ zlib.crc32(f"{new.check}|{new.subject}".encode())
    judged = base.status not in _UNJUDGED and new.status not in _UNJUDGED
    base_evidence = evidence(new.metric, new.subject, base_results) if judged else None
    new_evidence = evidence(new.metric, new.subject, new_results) if judged else None
    finite = all(v is not None and math.isfinite(v) for v in (base.observed, new.observed))
    interval, method = (
        _interval(new.metric, base_evidence, new_evidence, settings, seed)
        if judged and finite
        else (None, "values only")
    )
    change = Change(
        check=new.check,
        metric=new.metric,
        subject=new.subject,
        dimension=new.dimension,
        lower_is_better=direction(new, directions),
        base=base.observed,
        new=new.observed,
        base_status=base.status,
        new_status=new.status,
        interval=interval,
        method=method,
        samples=(
            base_evidence.count if base_evidence and interval else 0,
            new_evidence.count if new_evidence and interval else 0,
        ),
        outcome=Outcome.UNCHANGED,
        reason="",
    )
    outcome, reason = _decide(change, settings)
    return _with(change, outcome, reason)


def _with(change: Change, outcome: Outcome, reason: str) -> Change:
    return replace(change, outcome=outcome, reason=reason)


def _one_side(verdict: Verdict, directions: Mapping[str, bool], outcome: Outcome) -> Change:
    in_base = outcome is Outcome.ONLY_BASE
    return Change(
        check=verdict.check,
        metric=verdict.metric,
        subject=verdict.subject,
        dimension=verdict.dimension,
        lower_is_better=direction(verdict, directions),
        base=verdict.observed if in_base else None,
        new=None if in_base else verdict.observed,
        base_status=verdict.status if in_base else None,
        new_status=None if in_base else verdict.status,
        interval=None,
        method="",
        samples=(0, 0),
        outcome=outcome,
        reason=f"judged in {'BASE' if in_base else 'NEW'} only",
    )


def _by_key(verdicts: Sequence[Verdict]) -> dict[tuple[str, Subject], Verdict]:
    return {(v.check, v.subject): v for v in verdicts}


def compare(
    base: RunRecord,
    new: RunRecord,
    directions: Mapping[str, bool] | None = None,
    settings: CompareSettings | None = None,
) -> Comparison:
    """Every (check, subject) of either run, in NEW's order then BASE-only ones."""
    results = ({m.key: m for m in base.results}, {m.key: m for m in new.results})
    info = RunInfo.of(base), RunInfo.of(new)
    return compare_verdicts(info[0], base.verdicts, info[1], new.verdicts, directions, settings, results=results)


def compare_verdicts(
    base: RunInfo,
    base_list: Sequence[Verdict],
    new: RunInfo,
    new_list: Sequence[Verdict],
    directions: Mapping[str, bool] | None = None,
    settings: CompareSettings | None = None,
    *,
    results: tuple[Mapping[ResultKey, Measurement], Mapping[ResultKey, Measurement]] = ({}, {}),
) -> Comparison:
    """``compare`` of runs known by their verdicts; without ``results`` (BASE's, NEW's) the value-only
    form (the summary a CronJob run keeps in the cluster has no raw samples): a regression is then a
    verdict that got worse or a pair that stopped answering."""
    base_results, new_results = results
    directions = directions or {}
    settings = settings or CompareSettings()
    base_verdicts, new_verdicts = _by_key(base_list), _by_key(new_list)
    changes: list[Change] = []
    for key, verdict in new_verdicts.items():
        before = base_verdicts.get(key)
        if before is None:
            changes.append(_one_side(verdict, directions, Outcome.ONLY_NEW))
        elif before.metric != verdict.metric:
            changes.append(
                _with(
                    _one_side(verdict, directions, Outcome.ONLY_NEW),
                    Outcome.NOT_COMPARED,
                    f"metric changed: {before.metric} in BASE",
                )
            )
        else:
            changes.append(_change(before, verdict, base_results, new_results, directions, settings))
    changes.extend(
        _one_side(verdict, directions, Outcome.ONLY_BASE)
        for key, verdict in base_verdicts.items()
        if key not in new_verdicts
    )
    return Comparison(base, new, settings, tuple(changes), _notes(base, new))


def _notes(base: RunInfo, new: RunInfo) -> tuple[str, ...]:
    notes = []
    if base.scenario != new.scenario:
        notes.append(f"the runs judged different scenarios ({base.scenario}, {new.scenario})")
    if base.target != new.target:
        notes.append(f"the runs measured different targets ({base.target}, {new.target})")
    quick = [name for name, record in (("BASE", base), ("NEW", new)) if record.quick]
    if quick:
        notes.append(f"{' and '.join(quick)} ran with --quick: fewer samples, wider intervals")
    return tuple(notes)
