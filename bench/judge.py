"""The judge: pure functions from results and thresholds to verdicts.  No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from talbench.bench.metric import Metric
from talbench.bench.model import Check, Measurement, Node, Observation, ResultKey, Status, Subject, Verdict
from talbench.bench.plan import Plan
from talbench.bench.units import Quantity, format_value


def threshold_text(check: Check, metric: Metric) -> str:
    """``< 15ms (warn >= 10ms)`` for lower-is-better, ``>= 90 % (warn < 95 %)`` otherwise."""
    good, bad = ("<", ">=") if metric.lower_is_better else (">=", "<")
    parts = []
    if check.fail is not None:
        parts.append(f"{good} {check.fail}")
    if check.warn is not None:
        parts.append(f"warn {bad} {check.warn}")
    return ", ".join(parts) if parts else "report only"


def _crosses(value: float, limit: Quantity | None, lower_is_better: bool) -> bool:
    if limit is None:
        return False
    return value >= limit.value if lower_is_better else value < limit.value


def judge_value(check: Check, metric: Metric, observation: Observation) -> Status:
    """Status for one observation: INVALID and NO_DATA before any comparison."""
    if observation.invalid:
        return Status.INVALID
    if observation.not_measured is not None:
        return Status.INFO
    if observation.value is None:
        return Status.NO_DATA
    if _crosses(observation.value, check.fail, metric.lower_is_better):
        return Status.FAIL
    if _crosses(observation.value, check.warn, metric.lower_is_better):
        return Status.WARN
    if check.fail is None and check.warn is None:
        return Status.INFO
    return Status.PASS


def judge_subject(
    check: Check,
    metric: Metric,
    subject: Subject,
    results: Mapping[ResultKey, Measurement],
    nodes: Sequence[Node],
) -> Verdict:
    needed = metric.keys_for(subject)
    threshold = threshold_text(check, metric)

    def verdict(status: Status, observed: float | None, message: str, detail: str = "") -> Verdict:
        return Verdict(
            check.name,
            check.metric,
            subject,
            status,
            observed,
            metric.dimension,
            threshold,
            message,
            check.source,
            detail,
        )

    missing = [key for key in needed if key not in results]
    failed = [results[key] for key in needed if key in results and not results[key].ok]
    if missing or failed:
        reasons = [f"{key}: no result" for key in missing] + [f"{m.key}: {m.error or 'failed'}" for m in failed]
        return verdict(Status.NO_DATA, None, "; ".join(reasons))
    observation = metric.observe(subject, [results[key] for key in needed], nodes)
    status = judge_value(check, metric, observation)
    shown = (
        format_value(observation.value, metric.dimension)
        if observation.value is not None and math.isfinite(observation.value)
        else ("none" if observation.value is None else "unbounded")
    )
    if status is Status.INVALID:
        message = f"not judged: {observation.invalid}"
    elif status is Status.NO_DATA:
        message = "the results hold no value for this metric"
    elif observation.not_measured is not None:
        message = f"not measured: {observation.not_measured}"
    elif status is Status.INFO:
        message = f"{shown} (reported, not judged)"
    else:
        message = f"{shown} ({'meets' if status is Status.PASS else 'crosses'} {threshold})"
    return verdict(status, observation.value, message, observation.detail)


def judge(
    plan: Plan, results: Mapping[ResultKey, Measurement], nodes: Sequence[Node], metrics: Mapping[str, Metric]
) -> tuple[Verdict, ...]:
    """Every planned (check, subject) gets exactly one verdict.  A check whose scope holds no
    subject (a control-plane-pairs check on one control plane) gets one INFO verdict saying so."""
    verdicts: list[Verdict] = []
    for check, subjects in plan.subjects:
        metric = metrics[check.metric]
        if not subjects:
            verdicts.append(
                Verdict(
                    check.name,
                    check.metric,
                    Subject(()),
                    Status.INFO,
                    None,
                    metric.dimension,
                    threshold_text(check, metric),
                    f"nothing in scope {check.scope.value} on this cluster",
                    check.source,
                )
            )
            continue
        verdicts.extend(judge_subject(check, metric, subject, results, nodes) for subject in subjects)
    return tuple(verdicts)


def overall(verdicts: Sequence[Verdict]) -> Status:
    """The run's status: the worst verdict, where any blocking status makes the run fail."""
    order = [Status.FAIL, Status.NO_DATA, Status.INVALID, Status.WARN, Status.PASS, Status.INFO]
    present = {v.status for v in verdicts}
    for status in order:
        if status in present:
            return status
    return Status.NO_DATA  # nothing judged at all is not a pass
