"""A judged run record for the report tests: a control-plane run on cp1..cp3 with a check of
every dimension (``run_record``)."""

from __future__ import annotations

from talbench.bench.model import Check, RunRecord, Scenario, Scope, Status, Subject, Verdict
from talbench.bench.units import Dimension, Quantity
from tests.bench.factories import nodes

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
