import json
import math
import xml.etree.ElementTree as ET

from talbench.bench import scenario
from talbench.bench.judge import judge
from talbench.bench.model import Measurement, ResultKey, RunRecord, Status
from talbench.bench.plan import make_plan
from talbench.bench.probes import default_drivers
from talbench.bench.report import junit
from talbench.bench.report.files import write_atomically
from talbench.bench.report.runjson import write as runjson
from talbench.bench.run import metrics_of
from tests.bench.factories import nodes, rtt

METRICS = metrics_of(default_drivers())


def record() -> RunRecord:
    cluster = nodes(3, 0)
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    checks = tuple(c for c in loaded.checks if c.name == "control-plane-rtt")
    plan = make_plan(checks, cluster, METRICS)
    results = {}
    for a, b in (("cp1", "cp2"), ("cp2", "cp1"), ("cp1", "cp3"), ("cp3", "cp1")):
        results[ResultKey("rtt", a, b)] = rtt(a, b, [25.0 if "cp3" in (a, b) else 1.0] * 150)
    results[ResultKey("rtt", "cp2", "cp3")] = rtt("cp2", "cp3", [], sent=150)  # every probe lost
    results[ResultKey("rtt", "cp3", "cp2")] = Measurement(
        ResultKey("rtt", "cp3", "cp2"), False, error="agent cp3: gone"
    )
    verdicts = judge(plan, results, cluster, METRICS)
    return RunRecord(
        "20261121-000000-abcd",
        loaded,
        "lab",
        True,
        cluster,
        100.0,
        110.5,
        tuple(results[k] for k in sorted(results)),
        verdicts,
        checks,
    )


def test_run_json_is_versioned_complete_and_valid_json():
    doc = json.loads(runjson.dumps(record()))
    assert doc["schema"] == "talbench/run/v1"
    assert doc["quick"] is True and doc["duration_s"] == 10.5
    assert [n["name"] for n in doc["nodes"]] == ["cp1", "cp2", "cp3"]
    assert {v["subject"]: v["status"] for v in doc["verdicts"]} == {
        "cp1-cp2": "pass",
        "cp1-cp3": "fail",
        "cp2-cp3": "no_data",
    }
    raw = next(r for r in doc["results"] if r["node"] == "cp1" and r["peer"] == "cp2")
    assert len(raw["data"]["samples_ns"]) == 150  # raw samples are kept
    assert doc["checks"][0]["fail"] == {"text": "15ms", "value": 0.015}


def test_unbounded_latency_is_written_as_a_string_not_invalid_json():
    rec = record()
    verdict = next(v for v in rec.verdicts if str(v.subject) == "cp1-cp3")
    assert verdict.status is Status.FAIL
    text = runjson.dumps(
        RunRecord(**{**rec.__dict__, "verdicts": (verdict.__class__(**{**verdict.__dict__, "observed": math.inf}),)})
    )
    assert json.loads(text)["verdicts"][0]["observed"] == "inf"


def test_junit_has_one_testcase_per_verdict_with_failures_and_errors():
    root = ET.fromstring(junit.dumps(record()))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 3
    assert suite.get("failures") == "1" and suite.get("errors") == "1"
    failed = next(c for c in cases if c.get("name") == "cp1-cp3")
    assert "15ms" in failed.find("failure").get("message")
    missing = next(c for c in cases if c.get("name") == "cp2-cp3")
    assert missing.find("error").get("type") == "no_data"


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "run.json"
    write_atomically(target, "one")
    write_atomically(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]
