"""Judged run records for the report tests.

- ``run_record``: a control-plane run on cp1..cp3 with a check of every dimension.
- ``judged_record``: the control-plane scenario's RTT checks judged by the real judge.
- ``thousand_nodes``: 1,000 nodes' RTT results, mostly compacted into histograms.
"""

from __future__ import annotations

import random
from dataclasses import replace

from talbench.bench import scenario
from talbench.bench.judge import judge
from talbench.bench.model import Check, Measurement, ResultKey, RunRecord, Scenario, Scope, Status, Subject, Verdict
from talbench.bench.plan import make_plan
from talbench.bench.probes import default_drivers
from talbench.bench.probes.rtt.metrics import compact
from talbench.bench.run import metrics_of
from talbench.bench.units import Dimension, Quantity
from tests.bench.factories import nodes, rtt

MS = 1e-3
PAIRS = (("cp1", "cp2"), ("cp1", "cp3"), ("cp2", "cp3"))
CHECKS = (
    Check(
        "control-plane-rtt",
        "rtt.p99",
        Scope.CONTROL_PLANE_PAIRS,
        Quantity(10 * MS, Dimension.DURATION, "10ms"),
        Quantity(15 * MS, Dimension.DURATION, "15ms"),
        "src",
    ),
    Check(
        "control-plane-rtt-loss",
        "rtt.loss",
        Scope.CONTROL_PLANE_PAIRS,
        Quantity(0.005, Dimension.RATIO, "0.5 %"),
        Quantity(0.02, Dimension.RATIO, "2 %"),
        "src",
    ),
    Check(
        "control-plane-path-mtu",
        "mtu.path",
        Scope.CONTROL_PLANE_PAIRS,
        None,
        Quantity(1480, Dimension.BYTES, "1480B"),
        "src",
    ),
    Check("control-plane-tunnel-throughput", "wireguard.throughput", Scope.CONTROL_PLANE_PAIRS, None, None, "src"),
    Check("etcd-write-rate", "etcd.rate", Scope.CLUSTER, None, None, "src"),
    Check(
        "control-plane-count", "topology.control_planes", Scope.CLUSTER, Quantity(5, Dimension.COUNT, "5"), None, "src"
    ),
    Check(
        "etcd-wal-fsync",
        "etcd.wal_fsync_p99",
        Scope.CONTROL_PLANE_NODES,
        None,
        Quantity(10 * MS, Dimension.DURATION, "10ms"),
        "src",
    ),
)


def run_record(run_id: str, *, scale: float = 1.0, started: float = 1_700_000_000.0) -> RunRecord:
    """A control-plane run on cp1..cp3 with a check of every dimension; ``scale`` moves every value
    (a second run measures different figures); cp2's etcd figure never came (no_data)."""
    checks = {c.name: c for c in CHECKS}

    def verdict(check: str, subject: tuple[str, ...], status: Status, observed: float | None, dim: Dimension):
        c = checks[check]
        value = None if observed is None else observed * scale
        return Verdict(c.name, c.metric, Subject(subject), status, value, dim, "", "", c.source)

    verdicts = [
        *(verdict("control-plane-rtt", p, Status.PASS, (1 + i) * MS, Dimension.DURATION) for i, p in enumerate(PAIRS)),
        *(verdict("control-plane-rtt-loss", p, Status.PASS, 0.001 * i, Dimension.RATIO) for i, p in enumerate(PAIRS)),
        *(verdict("control-plane-path-mtu", p, Status.PASS, 1500.0, Dimension.BYTES) for p in PAIRS),
        *(verdict("control-plane-tunnel-throughput", p, Status.INFO, 8e8, Dimension.BITRATE) for p in PAIRS),
        verdict("etcd-write-rate", (), Status.INFO, 4000.0, Dimension.RATE),
        verdict("control-plane-count", (), Status.PASS, 3.0, Dimension.COUNT),
        verdict("etcd-wal-fsync", ("cp1",), Status.PASS, 2 * MS, Dimension.DURATION),
        verdict("etcd-wal-fsync", ("cp2",), Status.NO_DATA, None, Dimension.DURATION),
        verdict("etcd-wal-fsync", ("cp3",), Status.FAIL, 12 * MS, Dimension.DURATION),
    ]
    return RunRecord(
        run_id=run_id,
        scenario=Scenario("control-plane", "", "control-plane.yaml", CHECKS),
        target="kube",
        quick=False,
        nodes=nodes(3, 0),
        started=started,
        ended=started + 150.0,
        results=(),
        verdicts=tuple(verdicts),
        checks=CHECKS,
        metadata={"tool_version": "0.1.0", "kube": {"context": "admin@prod-eu1"}},
    )


METRICS = metrics_of(default_drivers())


def judged_record(control_planes: int = 3, workers: int = 1, *, slow: str = "cp3", seed: int = 7) -> RunRecord:
    """A run of the control-plane scenario's RTT checks, judged by the real judge: every pair
    measured both ways (``slow``'s pairs at ~25 ms), one direction lost entirely."""
    cluster = nodes(control_planes, workers)
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    checks = tuple(c for c in loaded.checks if c.probe == "rtt")
    plan = make_plan(checks, cluster, METRICS)
    rng = random.Random(seed)
    results: dict[ResultKey, Measurement] = {}
    for key in sorted(plan.keys_of("rtt")):
        base = 25.0 if slow in (key.node, key.peer) else 0.4
        results[key] = rtt(key.node, key.peer or "", [base + rng.expovariate(4.0) for _ in range(150)])
    lost = ResultKey("rtt", "cp1", "w1") if workers else None
    if lost in results:
        results[lost] = rtt("cp1", "w1", [], sent=150)
    verdicts = judge(plan, results, cluster, METRICS)
    return RunRecord(
        "20261126-010000-beef",
        loaded,
        "lab",
        True,
        cluster,
        1795650000.0,
        1795650042.0,
        tuple(results[k] for k in sorted(results)),
        verdicts,
        checks,
        metadata={"tool_version": "0.1.0"},
    )


def thousand_nodes() -> RunRecord:
    """1,000 nodes, every node to its next 3 (3,000 measured directions), as a 1,000-node run
    keeps them: the control-plane pairs raw, the others compacted into histograms as the RTT
    driver does past its raw limit.  cp3 -> w1 is slow."""
    cluster = nodes(5, 995)
    rng = random.Random(1)
    names = [n.name for n in cluster]
    control = {n.name for n in cluster if n.is_control_plane}
    results = []
    for i, name in enumerate(names):
        for step in (1, 2, 3):
            peer = names[(i + step) % len(names)]
            samples = [40.0] * 20 if (name, peer) == ("cp3", "w1") else [rng.uniform(0.2, 2.0) for _ in range(20)]
            m = rtt(name, peer, samples, sent=25)
            results.append(m if {name, peer} <= control else replace(m, data=compact(m.data)))
    return RunRecord("r", judged_record().scenario, "kube", False, cluster, 0.0, 1.0, tuple(results), (), ())
