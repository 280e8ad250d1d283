"""Reading run.json back: what a run wrote reads back as the records it was written from, for
every schema version talbench has written; anything else is one line naming the file."""

from __future__ import annotations

import json
import math

import pytest

from talbench.bench.model import (
    Check,
    Measurement,
    ResultKey,
    RunRecord,
    Scenario,
    Scope,
    Status,
    Subject,
    Verdict,
)
from talbench.bench.report import runjson
from talbench.bench.report.runjson_read import READERS, RunFileError, parse_run, read_run
from talbench.bench.units import Dimension, Quantity
from tests.bench import factories

CHECK = Check(
    "control-plane-rtt",
    "rtt.p99",
    Scope.CONTROL_PLANE_PAIRS,
    Quantity(0.010, Dimension.DURATION, "10ms"),
    Quantity(0.015, Dimension.DURATION, "15ms"),
    "reference architecture",
)


def record() -> RunRecord:
    results = (
        factories.rtt("cp1", "cp2", [0.1, 0.2, 0.3]),
        Measurement(ResultKey("fsync", "cp1"), False, error="fio not found", error_kind="unavailable"),
    )
    verdicts = (
        Verdict("control-plane-rtt", "rtt.p99", Subject(("cp1", "cp2")), Status.PASS, 0.0003, Dimension.DURATION,
                "< 15ms, warn >= 10ms", "0.3 ms (meets ...)", "reference architecture", "n=3/3"),
        Verdict("control-plane-rtt", "rtt.p99", Subject(("cp1", "cp3")), Status.FAIL, math.inf, Dimension.DURATION,
                "< 15ms, warn >= 10ms", "unbounded", "reference architecture"),
        Verdict("etcd", "etcd.x", Subject(()), Status.NO_DATA, None, Dimension.COUNT, "report only", "none", "s"),
    )  # fmt: skip
    return RunRecord(
        run_id="20260101-000000-abcd",
        scenario=Scenario("control-plane", "the control plane", "scenarios/control-plane.yaml", (CHECK,)),
        target="lab",
        quick=True,
        nodes=factories.nodes(3, 1),
        started=100.0,
        ended=160.5,
        results=results,
        verdicts=verdicts,
        checks=(CHECK,),
        unready={"w1": "never came"},
        timings={"rtt": (101.0, 104.0)},
        metadata={"talbench": "0.1.0"},
    )


def test_every_schema_talbench_writes_has_a_reader():
    assert runjson.RUN_SCHEMA in READERS


def test_a_written_run_reads_back_as_its_records(tmp_path):
    original = record()
    run_dir = tmp_path / original.run_id
    run_dir.mkdir()
    (run_dir / "run.json").write_text(runjson.dumps(original))
    for path in (run_dir, run_dir / "run.json"):
        read = read_run(path)
        assert read.verdicts == original.verdicts  # infinity and null included
        assert read.checks == original.checks
        assert [(m.key, m.ok, dict(m.data), m.error, m.error_kind) for m in read.results] == [
            (m.key, m.ok, dict(m.data), m.error, m.error_kind) for m in original.results
        ]
        assert read.nodes == original.nodes and read.nodes[0].labels == original.nodes[0].labels
        assert (read.run_id, read.target, read.quick, read.started, read.ended) == (
            original.run_id,
            "lab",
            True,
            100.0,
            160.5,
        )
        assert read.scenario.name == "control-plane" and read.scenario.checks == (CHECK,)
        assert dict(read.unready) == {"w1": "never came"} and dict(read.timings) == {"rtt": (101.0, 104.0)}
        # and writing it again gives the same document (a re-render loses nothing run.json holds)
        again = runjson.to_dict(read)
        assert {k: v for k, v in again.items() if k != "scenario"} == {
            k: v for k, v in runjson.to_dict(original).items() if k != "scenario"
        }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not JSON (line 1"),
        ("[]", "top level is not an object"),
        ('{"schema": "talbench/run/v0"}', "unknown schema 'talbench/run/v0' (this talbench reads talbench/run/v1)"),
        ('{"run_id": "x"}', "unknown schema None"),
        ('{"schema": "talbench/run/v1", "run_id": "x"}', "damaged talbench/run/v1 file: top level: missing 'scenario'"),
    ],
)
def test_unreadable_documents_are_one_line_naming_the_file(text, expected):
    with pytest.raises(RunFileError) as caught:
        parse_run(text, "some/run.json")
    message = str(caught.value)
    assert message.startswith("some/run.json: ") and expected in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_damage_inside_a_record_names_where(tmp_path):
    document = runjson.to_dict(record())
    document["verdicts"][1]["unit"] = "furlongs"
    with pytest.raises(RunFileError, match=r"verdicts\[1\]: unknown Dimension 'furlongs'"):
        parse_run(json.dumps(document))
    document = runjson.to_dict(record())
    document["results"][0]["ok"] = "yes"
    with pytest.raises(RunFileError, match=r"results\[0\]: 'ok' is str, expected bool"):
        parse_run(json.dumps(document))
    document = runjson.to_dict(record())
    document["unready"] = ["w1"]
    with pytest.raises(RunFileError, match="damaged"):
        parse_run(json.dumps(document))
    with pytest.raises(RunFileError, match="no such file"):
        read_run(tmp_path / "nothing")
