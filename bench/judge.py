"""The judge: pure functions from results and thresholds to verdicts.  No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from talbench.bench.context import context_of, resource_number
from talbench.bench.metric import Metric
from talbench.bench.model import (
    CLUSTER_NODE,
    Check,
    Measurement,
    Node,
    Observation,
    ResultKey,
    Status,
    Subject,
    Verdict,
)
from talbench.bench.plan import Plan
from talbench.bench.units import Quantity, format_value

# CPU throttling of the agent's cgroup (agents.resources: cpu_periods, cpu_throttled_periods,
# cpu_throttled_s, cpu_quota_cores).  A throttled CFS period holds every task of the cgroup -- the
# agent's event loop, fio, iperf3, etcd, the load workers -- off the CPU until the period ends (up
# to a whole period, 100 ms by default), and that stall lands in whatever the job was timing.
# Samples are spread over the job as periods are, so once more than THROTTLED_SHARE of the
# periods were throttled more than ~1 % of the samples can carry a stall: enough to move a p99,
# the figure most checks judge (the same 1 % as rtt's stalled-loop share and the load generator's
# late share).  Rarer throttling still invalidates when it adds up to THROTTLED_S: a stall that long
# could carry a max-type figure by itself (half the 500 ms slowest-write limit, as the load
# generator's LATE_MAX_LIMIT).  A job that was never throttled is judged exactly as before.
THROTTLED_SHARE = 0.01
THROTTLED_S = 0.25


def throttling(measurement: Measurement) -> str | None:
    """Why the measurement's job was CPU-throttled enough to distort its timing, or None."""
    resources = measurement.resources
    throttled, periods = resource_number(resources, "cpu_throttled_periods"), resource_number(resources, "cpu_periods")
    seconds = resource_number(resources, "cpu_throttled_s") or 0.0
    if not throttled or periods is None:
        return None
    if throttled <= THROTTLED_SHARE * periods and seconds < THROTTLED_S:
        return None
    quota = resource_number(resources, "cpu_quota_cores")
    under = f"a {quota:g}-core quota" if quota is not None else "a CPU quota"
    who = (
        f"agent on {measurement.key.node}"
        if measurement.key.node != CLUSTER_NODE
        else f"agent running {measurement.key}"
    )
    return f"{who} was CPU-throttled in {throttled:.0f} of {periods:.0f} periods ({seconds:.1f} s) under {under}"


def throttled_reason(measurements: Sequence[Measurement]) -> str | None:
    """One reason naming every throttled job among ``measurements``, or None."""
    reasons = list(dict.fromkeys(r for r in map(throttling, measurements) if r is not None))
    if not reasons:
        return None
    return f"{'; '.join(reasons)}: its timing is the quota's, not the cluster's"


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

    context = context_of([results[key] for key in needed if key in results])

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
            context,
        )

    missing = [key for key in needed if key not in results]
    failed = [results[key] for key in needed if key in results and not results[key].ok]
    throttled = throttled_reason([results[key] for key in needed if key in results]) if metric.timed else None
    if missing or failed:
        reasons = [f"{key}: no result" for key in missing] + [f"{m.key}: {m.error or 'failed'}" for m in failed]
        if throttled is not None and not missing:  # a job that ran out of time under a quota
            return verdict(Status.INVALID, None, f"not judged: {throttled} ({'; '.join(reasons)})")
        return verdict(Status.NO_DATA, None, "; ".join(reasons))
    observation = metric.observe(subject, [results[key] for key in needed], nodes)
    if throttled is not None and observation.not_measured is None:
        also = f"; {observation.invalid}" if observation.invalid else ""
        observation = replace(observation, invalid=f"{throttled}{also}")
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


def _check_note(check: Check, metric: Metric, message: str) -> Verdict:
    """An INFO verdict about the check as a whole (no subject): what was not judged, and why."""
    return Verdict(
        check.name,
        check.metric,
        Subject(()),
        Status.INFO,
        None,
        metric.dimension,
        threshold_text(check, metric),
        message,
        check.source,
    )


def judge(
    plan: Plan, results: Mapping[ResultKey, Measurement], nodes: Sequence[Node], metrics: Mapping[str, Metric]
) -> tuple[Verdict, ...]:
    """Every planned (check, subject) gets exactly one verdict.  A check whose scope holds no
    subject (a control-plane-pairs check on one control plane) gets one INFO verdict saying so."""
    verdicts: list[Verdict] = []
    for check, subjects in plan.subjects:
        metric = metrics[check.metric]
        if check.name in plan.not_applicable:
            verdicts.append(_check_note(check, metric, plan.not_applicable[check.name]))
            continue
        if not subjects:
            verdicts.append(_check_note(check, metric, f"nothing in scope {check.scope.value} on this cluster"))
            continue
        verdicts.extend(judge_subject(check, metric, subject, results, nodes) for subject in subjects)
        left_out = plan.sampled_out.get(check.name, 0)
        if left_out:
            degree = plan.samples[metric.probe].degree
            verdicts.append(
                _check_note(
                    check,
                    metric,
                    f"not measured: {left_out} pairs sampled out (each node measures at most {degree} "
                    f"peers beyond the control planes; 'talbench run --dry-run' lists the pairs)",
                )
            )
    return tuple(verdicts)


def overall(verdicts: Sequence[Verdict]) -> Status:
    """The run's status: the worst verdict, where any blocking status makes the run fail."""
    order = [Status.FAIL, Status.NO_DATA, Status.INVALID, Status.WARN, Status.PASS, Status.INFO]
    present = {v.status for v in verdicts}
    for status in order:
        if status in present:
            return status
    return Status.NO_DATA  # nothing judged at all is not a pass
