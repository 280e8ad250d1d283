"""Reading run.json back: what a run wrote reads back as the records it was written from, for
every schema version talbench has written; anything else is one line naming the file."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from talbench.bench.histogram import SCHEME, Histogram
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
from talbench.bench.probes.rtt.metrics import compact
from talbench.bench.report.runjson import write as runjson
from talbench.bench.report.runjson.read import READERS, RunFileError, parse_run, read_run
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
    compacted = factories.rtt("w1", "cp1", [0.4, 0.5, 0.5, 9.0])
    results = (
        factories.rtt("cp1", "cp2", [0.1, 0.2, 0.3]),
        replace(compacted, data=compact(compacted.data)),  # as the RTT driver keeps it past raw_limit
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


def test_a_compacted_result_is_written_as_json_and_read_back_as_its_histograms():
    """The RTT driver keeps Histogram records; run.json holds their JSON form (its v1 format, as
    before) and reading it gives the records back, so a re-rendered report reads the same figures."""
    original = record()
    text = runjson.dumps(original)
    written = json.loads(text)["results"][1]["data"]
    assert written["histogram_ns"]["scheme"] == SCHEME and written["histogram_ns"]["count"] == 4
    assert written["histogram_ns"] == original.results[1].data["histogram_ns"].to_json()
    assert text == json.dumps(runjson.to_dict(original), separators=(",", ":")) + "\n"  # dumps streams to_dict
    read = parse_run(text).results[1].data
    assert (
        isinstance(read["histogram_ns"], Histogram) and read["histogram_ns"] == original.results[1].data["histogram_ns"]
    )
    assert read["histogram_ns"].maximum == 9_000_000 and read["histogram_ns"].percentile(50) == pytest.approx(
        5e5, rel=0.02
    )
    assert runjson.dumps(parse_run(text)) == text


def test_a_damaged_histogram_is_one_line():
    document = runjson.to_dict(record())
    document["results"][1]["data"]["histogram_ns"]["buckets"] = [[-3, 1]]
    with pytest.raises(RunFileError, match=r"damaged talbench/run/v1 file: ValueError: bucket index"):
        parse_run(json.dumps(document))
