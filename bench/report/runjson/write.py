"""run.json: the versioned, complete record of a run (raw results included)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from talbench.bench.histogram import Histogram
from talbench.bench.model import Check, Measurement, Node, RunRecord, Verdict

RUN_SCHEMA = "talbench/run/v1"


def json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: an unbounded observation is written as the string "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def node_dict(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "role": node.role.value,
        "address": node.address,
        "labels": dict(node.labels),
        "taints": list(node.taints),
    }


def check_dict(check: Check) -> dict[str, Any]:
    threshold = check.fail or check.warn
    return {
        "name": check.name,
        "metric": check.metric,
        "scope": check.scope.value,
        "warn": None if check.warn is None else {"text": check.warn.text, "value": check.warn.value},
        "fail": None if check.fail is None else {"text": check.fail.text, "value": check.fail.value},
        "unit": threshold.dimension.value if threshold else None,
        "source": check.source,
    }


def measurement_dict(m: Measurement) -> dict[str, Any]:
    return {
        "probe": m.key.probe,
        "node": m.key.node,
        "peer": m.key.peer,
        "ok": m.ok,
        "error": m.error,
        "error_kind": m.error_kind,
        "started": m.started,
        "ended": m.ended,
        "resources": dict(m.resources),
        "data": data_dict(m.data),
    }


def data_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """A result's data as JSON holds it: the Histogram records a driver compacted samples into
    (bench/probes/rtt/metrics.py ``compact``) in their JSON form, the rest as it is."""
    return {key: value.to_json() if isinstance(value, Histogram) else value for key, value in data.items()}


def verdict_dict(v: Verdict) -> dict[str, Any]:
    return {
        "check": v.check,
        "metric": v.metric,
        "subject": str(v.subject),
        "nodes": list(v.subject.nodes),
        "status": v.status.value,
        "observed": json_number(v.observed),
        "unit": v.dimension.value,
        "threshold": v.threshold,
        "message": v.message,
        "detail": v.detail,
        "context": v.context,
        "source": v.source,
    }


def summary(record: RunRecord) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for v in record.verdicts:
        counts[v.status.value] = counts.get(v.status.value, 0) + 1
    return counts


def to_dict(record: RunRecord) -> dict[str, Any]:
    return {
        **_head(record),
        "results": [measurement_dict(m) for m in record.results],
        "superseded_results": [measurement_dict(m) for m in record.superseded],
    }


def _head(record: RunRecord) -> dict[str, Any]:
    """Everything but the results (the last two keys)."""
    return {
        "schema": RUN_SCHEMA,
        "run_id": record.run_id,
        "scenario": {
            "name": record.scenario.name,
            "path": record.scenario.path,
            "description": record.scenario.description,
        },
        "target": record.target,
        "quick": record.quick,
        "started": record.started,
        "ended": record.ended,
        "duration_s": round(record.ended - record.started, 3),
        "timings": {probe: {"started": s, "ended": e} for probe, (s, e) in record.timings.items()},
        "metadata": dict(record.metadata),
        "nodes": [node_dict(n) for n in record.nodes],
        "unready": dict(record.unready),
        "checks": [check_dict(c) for c in record.checks],
        "summary": summary(record),
        "verdicts": [verdict_dict(v) for v in record.verdicts],
    }


def dumps(record: RunRecord) -> str:
    """``to_dict`` as compact JSON (``jq .`` shows it indented), encoded one result at a time:
    the whole document is never in memory as dicts and lists, only as text (at 1,000 nodes the
    results' histograms alone make a large heap as lists).  Not ``indent``: that takes json's
    pure-Python encoder, which holds every token as its own string until the end."""
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    pieces = [encode(_head(record))[:-1]]  # its closing brace comes last
    for key, measurements in (("results", record.results), ("superseded_results", record.superseded)):
        pieces.append(f',"{key}":[')
        for i, m in enumerate(measurements):
            pieces.append(("," if i else "") + encode(measurement_dict(m)))
        pieces.append("]")
    pieces.append("}\n")
    return "".join(pieces)
