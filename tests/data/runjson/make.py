"""Writes a stored run.json with the run.json writer of whichever talbench is imported first.

    PYTHONPATH=CHECKOUT_VIEW python tests/data/runjson/make.py OUT.json

CHECKOUT_VIEW is a directory holding ``talbench/`` (bench -> CHECKOUT/bench, agents ->
CHECKOUT/agents) for the checkout whose writer wrote the file: each stored file is made by the
code of its schema version, not by today's (tests/bench/report/test_runjson_stored.py reads
them back).  The record uses only what every version of the records has had, plus a compacted
RTT histogram where the checkout has bench/histogram.py.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from talbench.bench.model import (
    Check,
    Measurement,
    Node,
    ResultKey,
    Role,
    RunRecord,
    Scenario,
    Scope,
    Status,
    Subject,
    Verdict,
)

try:  # the writer's module since the report packages (issue 21)
    from talbench.bench.report.runjson import write as runjson
except ImportError:  # a checkout from before them: bench/report/runjson.py
    from talbench.bench.report import runjson  # type: ignore[no-redef]
from talbench.bench.units import Dimension, Quantity

MS = 1e-3
STARTED = 1_764_000_000.0


def nodes() -> tuple[Node, ...]:
    label = "node-role.kubernetes.io/control-plane"
    made = [Node(f"cp{i}", Role.CONTROL_PLANE, f"10.213.0.{10 + i}", {label: ""}) for i in (1, 2, 3)]
    made.append(Node("w1", Role.WORKER, "10.213.0.101", {"zone": "b"}, ("dedicated=bench:NoSchedule",)))
    return tuple(made)


def rtt(node: str, peer: str, samples_ms: list[float]) -> Measurement:
    samples_ns = [int(ms * 1e6) for ms in samples_ms]
    data = {"sent": len(samples_ns) + 1, "received": len(samples_ns), "samples_ns": samples_ns, "min_samples": 1}
    return Measurement(
        ResultKey("rtt", node, peer),
        True,
        data=data,
        started=STARTED + 1.0,
        ended=STARTED + 4.0,
        resources={"cpu_process_percent": 4.5},
    )


def compacted(node: str, peer: str, samples_ms: list[float]) -> Measurement | None:
    try:
        from talbench.bench.histogram import Histogram
    except ImportError:  # before bench/histogram.py: raw samples only
        return None
    measured = rtt(node, peer, samples_ms)
    data = {k: v for k, v in measured.data.items() if k != "samples_ns"}
    data["histogram_ns"] = Histogram.of(measured.data["samples_ns"])
    return Measurement(measured.key, True, data=data, started=measured.started, ended=measured.ended)


def record() -> RunRecord:
    checks = (
        Check(
            "control-plane-rtt",
            "rtt.p99",
            Scope.CONTROL_PLANE_PAIRS,
            Quantity(10 * MS, Dimension.DURATION, "10ms"),
            Quantity(15 * MS, Dimension.DURATION, "15ms"),
            "reference architecture",
            "round-trip time between control planes",
        ),
        Check("etcd-wal-fsync", "fsync.p99", Scope.CONTROL_PLANE_NODES, None, Quantity(10 * MS, Dimension.DURATION, "10ms"), "etcd docs"),
        Check("control-plane-count", "topology.control_planes", Scope.CLUSTER, None, None, "src"),
    )  # fmt: skip
    pairs = ("cp1-cp2", "< 15ms, warn >= 10ms")
    verdicts = (
        Verdict("control-plane-rtt", "rtt.p99", Subject(("cp1", "cp2")), Status.PASS, 0.3 * MS, Dimension.DURATION,
                pairs[1], "0.3 ms", "reference architecture", "n=3/4"),
        Verdict("control-plane-rtt", "rtt.p99", Subject(("cp1", "cp3")), Status.WARN, 12 * MS, Dimension.DURATION,
                pairs[1], "12 ms", "reference architecture"),
        Verdict("control-plane-rtt", "rtt.p99", Subject(("cp2", "cp3")), Status.FAIL, math.inf, Dimension.DURATION,
                pairs[1], "unbounded", "reference architecture"),
        Verdict("etcd-wal-fsync", "fsync.p99", Subject(("cp1",)), Status.NO_DATA, None, Dimension.DURATION,
                "< 10ms", "fio not found", "etcd docs"),
        Verdict("etcd-wal-fsync", "fsync.p99", Subject(("cp2",)), Status.INVALID, 2 * MS, Dimension.DURATION,
                "< 10ms", "2 ms", "etcd docs", "too few samples"),
        Verdict("control-plane-count", "topology.control_planes", Subject(()), Status.INFO, 3.0, Dimension.COUNT,
                "report only", "3", "src"),
    )  # fmt: skip
    results = [
        rtt("cp1", "cp2", [0.1, 0.2, 0.3]),
        rtt("cp1", "cp3", [0.4, 12.0, 0.5]),
        Measurement(ResultKey("rtt", "cp2", "cp3"), False, error="no answer", error_kind="timeout"),
        Measurement(ResultKey("fsync", "cp1"), False, error="fio not found", error_kind="unavailable"),
        Measurement(ResultKey("fsync", "cp2"), True, data={"fsync_ns": [2_000_000, 1_900_000]}),
    ]
    histogram = compacted("w1", "cp1", [0.4, 0.5, 0.5, 9.0])
    if histogram is not None:
        results.append(histogram)
    return RunRecord(
        run_id="20251124-160000-abcd",
        scenario=Scenario("control-plane", "the control plane", "scenarios/control-plane.yaml", checks),
        target="lab",
        quick=True,
        nodes=nodes(),
        started=STARTED,
        ended=STARTED + 42.5,
        results=tuple(results),
        verdicts=verdicts,
        checks=checks,
        unready={"w2": "NotReady since 10 min"},
        timings={"rtt": (STARTED + 1.0, STARTED + 4.0), "fsync": (STARTED + 4.0, STARTED + 9.0)},
        metadata={"tool_version": "0.1.0", "lab": {"id": "t1"}},
    )


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(runjson.dumps(record()), encoding="utf-8")
