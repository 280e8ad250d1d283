"""A fail measured on a busy host is measured once more before it stands.  Pure: which results
to measure again, and how the second verdicts take the first ones' place.

After the first judgement, every FAIL whose measurements carry host noise (bench/context.py:
steal, other processes' CPU, writeback) names the results it was judged on; those are measured
once more (the same probes, only those keys) and everything is judged again.  A verdict whose
inputs were measured again says so and keeps the first reading in its detail, so the report
shows both and the context; the second reading stands, fail or not.  Only once: a host busy
both times keeps its fail, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from talbench.bench.context import noise_of
from talbench.bench.metric import Metric
from talbench.bench.model import Measurement, ResultKey, Status, SubjectKind, Verdict
from talbench.bench.plan import Plan


def to_remeasure(
    verdicts: Sequence[Verdict], results: Mapping[ResultKey, Measurement], metrics: Mapping[str, Metric]
) -> frozenset[ResultKey]:
    """The results behind every fail that was measured on a busy host."""
    keys: set[ResultKey] = set()
    for verdict in verdicts:
        if verdict.status is not Status.FAIL:
            continue
        needed = _inputs(verdict, metrics)
        measured = [results[key] for key in needed if key in results]
        if noise_of(measured) is not None:
            keys.update(needed)
    return frozenset(keys)


def _inputs(verdict: Verdict, metrics: Mapping[str, Metric]) -> tuple[ResultKey, ...]:
    """The results a verdict was judged on (none for "nothing in scope")."""
    metric = metrics[verdict.metric]
    if not verdict.subject.nodes and metric.kind is not SubjectKind.CLUSTER:
        return ()
    return metric.keys_for(verdict.subject)


def restricted(plan: Plan, keys: frozenset[ResultKey]) -> Plan:
    """The same plan, measuring only ``keys``."""
    return replace(plan, keys=plan.keys & keys)


def merge(
    first: Sequence[Verdict],
    second: Sequence[Verdict],
    remeasured: frozenset[ResultKey],
    first_results: Mapping[ResultKey, Measurement],
    metrics: Mapping[str, Metric],
) -> tuple[Verdict, ...]:
    """``second`` (the same plan judged on the new results), each verdict whose inputs were
    measured again noting what the first measurement read and on what host."""
    merged = []
    for before, after in zip(first, second, strict=True):
        needed = _inputs(after, metrics)
        if not remeasured.intersection(needed):
            merged.append(after)
            continue
        busy = noise_of([first_results[key] for key in needed if key in first_results])
        first_reading = f"first measurement: {before.status.value}, {before.message}" + (
            f", on a busy host ({busy})" if busy else ""
        )
        again = "measured again" + ("; still on a busy host" if after.status is Status.FAIL and busy else "")
        detail = "; ".join(part for part in (after.detail, f"{again}: {first_reading}") if part)
        merged.append(replace(after, detail=detail))
    return tuple(merged)
