"""run.json files written by earlier talbench versions read back: one stored file per schema
version the readers accept, each written by the code of its time (tests/data/runjson/make.py
says how), so a reader that stops reading what a released talbench wrote fails here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from talbench.bench.histogram import Histogram
from talbench.bench.model import ResultKey, Role, Status, Subject
from talbench.bench.report.runjson.read import READERS, read_run

STORED = Path(__file__).resolve().parents[2] / "data" / "runjson"
FILES = sorted(STORED.glob("*.json"))


def test_every_schema_the_readers_accept_has_a_stored_file() -> None:
    schemas = {json.loads(path.read_text(encoding="utf-8"))["schema"] for path in FILES}
    assert schemas == set(READERS), "store a run.json of each new schema: tests/data/runjson/make.py"


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_a_stored_run_reads_back_as_it_was_written(path: Path) -> None:
    record = read_run(path)
    assert record.run_id == "20251124-160000-abcd" and record.target == "lab" and record.quick
    assert record.scenario.name == "control-plane" and record.ended - record.started == 42.5
    assert [(n.name, n.role) for n in record.nodes] == [
        ("cp1", Role.CONTROL_PLANE),
        ("cp2", Role.CONTROL_PLANE),
        ("cp3", Role.CONTROL_PLANE),
        ("w1", Role.WORKER),
    ]
    assert record.nodes[3].taints == ("dedicated=bench:NoSchedule",)
    assert [c.name for c in record.checks] == ["control-plane-rtt", "etcd-wal-fsync", "control-plane-count"]
    assert record.checks[0].fail is not None and record.checks[0].fail.value == pytest.approx(0.015)
    assert record.checks[1].warn is None
    by_subject = {(v.check, v.subject): v for v in record.verdicts}
    assert [v.status for v in record.verdicts] == [
        Status.PASS,
        Status.WARN,
        Status.FAIL,
        Status.NO_DATA,
        Status.INVALID,
        Status.INFO,
    ]
    assert math.isinf(by_subject["control-plane-rtt", Subject(("cp2", "cp3"))].observed or 0.0)
    assert by_subject["etcd-wal-fsync", Subject(("cp1",))].observed is None
    assert by_subject["control-plane-rtt", Subject(("cp1", "cp2"))].detail == "n=3/4"
    results = {m.key: m for m in record.results}
    assert results[ResultKey("rtt", "cp1", "cp2")].data["samples_ns"] == [100_000, 200_000, 300_000]
    assert results[ResultKey("rtt", "cp1", "cp2")].resources == {"cpu_process_percent": 4.5}
    assert results[ResultKey("fsync", "cp1")].error_kind == "unavailable"
    assert not results[ResultKey("rtt", "cp2", "cp3")].ok
    assert record.timings == {
        "rtt": (record.started + 1.0, record.started + 4.0),
        "fsync": (record.started + 4.0, record.started + 9.0),
    }
    assert record.unready == {"w2": "NotReady since 10 min"} and record.metadata["lab"] == {"id": "t1"}
    compacted = results.get(ResultKey("rtt", "w1", "cp1"))  # written only since bench/histogram.py
    if compacted is not None:
        histogram = compacted.data["histogram_ns"]
        assert isinstance(histogram, Histogram) and histogram.count == 4
