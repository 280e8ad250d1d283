"""A run's figures as Prometheus metrics, built with ``prometheus_client`` in a registry of their
own (one per push: the library's global REGISTRY is process-wide mutable state).

Series identity is what a check measures, never the run: the Pushgateway's grouping key adds
``job="talbench"``, ``scenario`` and, when known, ``cluster``, and each scheduled run replaces the
previous run's group, so Prometheus sees one continuous series per check and subject.  The run id
is on one series only, ``talbench_run_info``.

    talbench_check_observed_<unit>{check,metric,subject}  observed value in base units: _seconds,
        _ratio, _bytes, _bytes_per_second (bit rates are divided by 8), _per_second; a plain
        count has no unit suffix (talbench_check_observed)
    talbench_check_status{check,metric,subject,status}    1 for the verdict's status, 0 for the others
    talbench_check_limit_<unit>{check,metric,level}       the check's warn and fail limits
    talbench_run_info{run_id,target,quick,version}        1
    talbench_run_start_timestamp_seconds, talbench_run_end_timestamp_seconds, talbench_run_duration_seconds
    talbench_run_nodes                                    nodes the run measured
    talbench_run_blocking_verdicts                        fail + no_data + invalid verdicts

With ``--keep-results`` (CronJob mode) a run compared with the previous one kept in the cluster
(bench/report/history.py) adds, only when it was compared:

    talbench_check_regressed{check,metric,subject}        1 when the verdict regressed since the previous run, else 0
    talbench_run_regressions                              regressions since the previous run
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest

from talbench.bench.model import Check, RunRecord, Status, Verdict
from talbench.bench.report.history import History
from talbench.bench.units import Dimension, Quantity

PREFIX = "talbench"
JOB = "talbench"

# The metric name suffix for each dimension, and the factor from talbench's base unit to
# Prometheus's (bits per second are not a Prometheus base unit: bytes per second are).
_UNITS: Mapping[Dimension, tuple[str, float]] = {
    Dimension.DURATION: ("_seconds", 1.0),
    Dimension.RATIO: ("_ratio", 1.0),
    Dimension.BYTES: ("_bytes", 1.0),
    Dimension.BITRATE: ("_bytes_per_second", 1 / 8),
    Dimension.RATE: ("_per_second", 1.0),
    Dimension.COUNT: ("", 1.0),
}
_UNIT_WORDS: Mapping[Dimension, str] = {
    Dimension.DURATION: "in seconds",
    Dimension.RATIO: "as a ratio (0.1 is 10 %)",
    Dimension.BYTES: "in bytes",
    Dimension.BITRATE: "in bytes per second",
    Dimension.RATE: "per second",
    Dimension.COUNT: "as a plain number",
}
STATUSES = tuple(s.value for s in Status)
CHECK_LABELS = ("check", "metric", "subject")


def metric_name(stem: str, dimension: Dimension) -> str:
    """``metric_name("check_observed", Dimension.DURATION)`` -> ``talbench_check_observed_seconds``."""
    return f"{PREFIX}_{stem}{_UNITS[dimension][0]}"


def to_base_unit(value: float, dimension: Dimension) -> float:
    return value * _UNITS[dimension][1]


@dataclass(frozen=True)
class Grouping:
    """Where a run goes on the Pushgateway: ``/metrics/job/talbench/scenario/<s>[/cluster/<c>]``."""

    scenario: str
    cluster: str | None = None

    def key(self) -> dict[str, str]:
        return {"scenario": self.scenario, **({"cluster": self.cluster} if self.cluster else {})}


def cluster_of(record: RunRecord) -> str | None:
    """The cluster a run measured, when the record names one: the kubeconfig context it used
    (in a pod, ``in-cluster`` names nothing: pass ``--cluster``).  A lab gets none (each lab is new)."""
    kube = record.metadata.get("kube")
    context = kube.get("context") if isinstance(kube, Mapping) else None
    return str(context) if context and context != "in-cluster" else None


def registry_for(record: RunRecord, history: History | None = None) -> CollectorRegistry:
    """A fresh registry holding the run's metrics (identity without the run id); with ``history``,
    its regressions since the previous kept run."""
    registry = CollectorRegistry(auto_describe=True)
    _check_metrics(registry, record.verdicts)
    _limit_metrics(registry, record.checks)
    _run_metrics(registry, record)
    if history is not None and history.compared_with is not None:
        _regression_metrics(registry, record.verdicts, history)
    return registry


def exposition(record: RunRecord, history: History | None = None) -> bytes:
    """The text the Pushgateway receives (Prometheus text format 0.0.4)."""
    return generate_latest(registry_for(record, history))


def _regression_metrics(registry: CollectorRegistry, verdicts: Sequence[Verdict], history: History) -> None:
    regressed = {(c.check, str(c.subject)) for c in history.regressions}
    gauge = Gauge(
        f"{PREFIX}_check_regressed",
        "1 when a talbench check's verdict for one subject regressed since the previous kept run, else 0.",
        CHECK_LABELS,
        registry=registry,
    )
    for v in verdicts:
        gauge.labels(check=v.check, metric=v.metric, subject=str(v.subject)).set(
            1 if (v.check, str(v.subject)) in regressed else 0
        )
    Gauge(
        f"{PREFIX}_run_regressions", "Regressions since the previous run kept in the cluster.", registry=registry
    ).set(len(history.regressions))


def _check_metrics(registry: CollectorRegistry, verdicts: Sequence[Verdict]) -> None:
    observed: dict[Dimension, Gauge] = {}
    status = Gauge(
        f"{PREFIX}_check_status",
        "Verdict of a talbench check for one subject: 1 for its status, 0 for the others.",
        (*CHECK_LABELS, "status"),
        registry=registry,
    )
    for v in verdicts:
        labels = {"check": v.check, "metric": v.metric, "subject": str(v.subject)}
        for name in STATUSES:
            status.labels(**labels, status=name).set(1 if v.status.value == name else 0)
        if v.observed is None or not math.isfinite(v.observed):
            continue  # no value, no sample: the status says why
        if v.dimension not in observed:
            observed[v.dimension] = Gauge(
                metric_name("check_observed", v.dimension),
                f"Observed value of a talbench check for one subject, {_UNIT_WORDS[v.dimension]}.",
                CHECK_LABELS,
                registry=registry,
            )
        observed[v.dimension].labels(**labels).set(to_base_unit(v.observed, v.dimension))


def _limit_metrics(registry: CollectorRegistry, checks: Sequence[Check]) -> None:
    limits: dict[Dimension, Gauge] = {}
    for check in checks:
        for level, quantity in (("warn", check.warn), ("fail", check.fail)):
            if quantity is None:
                continue
            gauge = limits.get(quantity.dimension) or _limit_gauge(registry, quantity)
            limits[quantity.dimension] = gauge
            gauge.labels(check=check.name, metric=check.metric, level=level).set(
                to_base_unit(quantity.value, quantity.dimension)
            )


def _limit_gauge(registry: CollectorRegistry, quantity: Quantity) -> Gauge:
    return Gauge(
        metric_name("check_limit", quantity.dimension),
        f"A talbench check's warn or fail limit, {_UNIT_WORDS[quantity.dimension]}.",
        ("check", "metric", "level"),
        registry=registry,
    )


def _run_metrics(registry: CollectorRegistry, record: RunRecord) -> None:
    version = record.metadata.get("tool_version")
    Info(f"{PREFIX}_run", "The talbench run whose figures these are.", registry=registry).info(
        {
            "run_id": record.run_id,
            "target": record.target,
            "quick": "true" if record.quick else "false",
            "version": str(version) if version else "unknown",
        }
    )
    figures = (
        ("run_start_timestamp_seconds", "When the run started, in seconds since the epoch.", record.started),
        ("run_end_timestamp_seconds", "When the run ended, in seconds since the epoch.", record.ended),
        ("run_duration_seconds", "How long the run took.", max(0.0, record.ended - record.started)),
        ("run_nodes", "Nodes the run measured.", float(len(record.nodes))),
        (
            "run_blocking_verdicts",
            "Verdicts that make the run fail (fail, no_data, invalid).",
            float(sum(1 for v in record.verdicts if v.status.blocks)),
        ),
    )
    for name, doc, value in figures:
        Gauge(f"{PREFIX}_{name}", doc, registry=registry).set(value)
