"""`talbench compare BASE NEW` as a user runs it, on run.json files written the way a run writes
them (records judged by the real judge from synthetic raw samples)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from talbench.bench.cli import main
from talbench.bench.compare.changes import CompareSettings, Outcome, compare
from talbench.bench.judge import judge_subject
from talbench.bench.model import Check, RunRecord, Scenario, Scope, Status, Subject, Verdict
from talbench.bench.probes.rtt.driver import RTT_METRICS
from talbench.bench.report.runjson import write as runjson
from talbench.bench.units import Dimension, Quantity
from tests.bench import factories

METRICS = {m.name: m for m in RTT_METRICS}
P99 = Check(
    "control-plane-rtt",
    "rtt.p99",
    Scope.CONTROL_PLANE_PAIRS,
    Quantity(0.010, Dimension.DURATION, "10ms"),
    Quantity(0.015, Dimension.DURATION, "15ms"),
    "reference architecture",
)
LOSS = Check(
    "control-plane-rtt-loss",
    "rtt.loss",
    Scope.CONTROL_PLANE_PAIRS,
    Quantity(0.005, Dimension.RATIO, "0.5 %"),
    Quantity(0.02, Dimension.RATIO, "2 %"),
    "talbench",
)
MAX = Check("control-plane-rtt-max", "rtt.max", Scope.CONTROL_PLANE_PAIRS, None, None, "report only")
PAIRS = [("cp1", "cp2"), ("cp1", "cp3"), ("cp2", "cp3")]


def make_run(
    directory: Path, run_id: str, *, seed: int, delay_ms: dict[str, float] | None = None, lost: int = 0
) -> Path:
    """A run of 300 RTT samples per direction on three control planes; ``delay_ms`` adds a node's
    delay to every round trip through it, ``lost`` probes of each direction go unanswered."""
    rng = random.Random(seed)
    delay_ms = delay_ms or {}
    results = []
    for a, b in PAIRS:
        for node, peer in ((a, b), (b, a)):
            extra = delay_ms.get(a, 0.0) + delay_ms.get(b, 0.0)
            samples = [rng.lognormvariate(-2.2, 0.35) + extra for _ in range(300 - lost)]
            results.append(factories.rtt(node, peer, samples, sent=300, min_samples=50))
    by_key = {m.key: m for m in results}
    nodes = factories.nodes(3, 0)
    verdicts = tuple(
        judge_subject(check, METRICS[check.metric], Subject((a, b)), by_key, nodes)
        for check in (P99, LOSS, MAX)
        for a, b in PAIRS
    )
    record = RunRecord(
        run_id=run_id,
        scenario=Scenario("control-plane", "", "scenarios/control-plane.yaml", (P99, LOSS, MAX)),
        target="lab",
        quick=False,
        nodes=nodes,
        started=1.0,
        ended=2.0,
        results=tuple(results),
        verdicts=verdicts,
        checks=(P99, LOSS, MAX),
    )
    run_dir = directory / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(runjson.dumps(record))
    return run_dir


def compare_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["compare", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def flagged(doc: dict) -> set[tuple[str, str]]:
    return {(c["check"], c["subject"]) for c in doc["changes"] if c["outcome"] == "regression"}


def test_two_runs_of_the_same_network_flag_nothing_and_exit_0(tmp_path, capsys):
    base = make_run(tmp_path, "base", seed=1)
    new = make_run(tmp_path, "new", seed=2)
    code, doc = compare_json(capsys, str(base), str(new / "run.json"))
    assert code == 0
    assert flagged(doc) == set() and doc["regressions"] == 0
    p99 = [c for c in doc["changes"] if c["check"] == "control-plane-rtt"]
    assert len(p99) == 3
    for change in p99:
        low, high = change["interval"]
        assert low < 0 < high  # sampling noise: the interval holds zero
        assert change["samples"] == [600, 600]
        assert "bootstrap of p99" in change["method"]


def test_a_delayed_node_flags_exactly_its_pairs_and_exits_1(tmp_path, capsys):
    base = make_run(tmp_path, "base", seed=1)
    new = make_run(tmp_path, "new", seed=2, delay_ms={"cp3": 2.0})
    code, doc = compare_json(capsys, str(base), str(new))
    assert code == 1
    assert flagged(doc) == {("control-plane-rtt", "cp1-cp3"), ("control-plane-rtt", "cp2-cp3")}
    change = next(c for c in doc["changes"] if c["subject"] == "cp1-cp3" and c["check"] == "control-plane-rtt")
    assert change["interval"][0] > 0.001  # every round trip through cp3 is 2 ms slower
    # the maximum moved too, but a maximum has no interval: values only, never flagged by itself
    maximum = next(c for c in doc["changes"] if c["subject"] == "cp1-cp3" and c["check"] == "control-plane-rtt-max")
    assert maximum["outcome"] == "changed" and maximum["interval"] is None
    assert "values only" in maximum["method"]
    # the other direction: the same pair of files swapped is an improvement, exit 0
    code, doc = compare_json(capsys, str(new), str(base))
    assert code == 0 and flagged(doc) == set()
    assert {c["subject"] for c in doc["changes"] if c["outcome"] == "improvement"} >= {"cp1-cp3", "cp2-cp3"}


def test_loss_is_compared_as_a_proportion(tmp_path, capsys):
    base = make_run(tmp_path, "base", seed=1)
    new = make_run(tmp_path, "new", seed=1, lost=30)  # 10 % of the probes unanswered
    code, doc = compare_json(capsys, str(base), str(new))
    assert code == 1
    assert flagged(doc) == {("control-plane-rtt-loss", pair) for pair in ("cp1-cp2", "cp1-cp3", "cp2-cp3")}
    loss = next(c for c in doc["changes"] if c["check"] == "control-plane-rtt-loss")
    assert "Newcombe" in loss["method"] and loss["interval"][0] > 0
    assert loss["reason"] == "verdict pass -> fail"


def test_table_and_html(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    base = make_run(tmp_path, "base", seed=1)
    new = make_run(tmp_path, "new", seed=2, delay_ms={"cp3": 2.0})
    page = tmp_path / "out" / "compare.html"
    code = main(["compare", str(base), str(new), "--html", str(page)])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 regressions" in out and "cp1-cp3" in out and "regression" in out
    assert "unchanged not listed" in out and "│ unchanged" not in out  # --all lists them
    assert "│ unchanged" in (main(["compare", str(base), str(new), "--all"]), capsys.readouterr().out)[1]
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text and "http" not in text
    assert text.count('<tr class="regression">') == 2
    assert text.count("<tr ") == 9  # one row per check and subject


def test_damaged_or_unknown_files_are_one_line_and_exit_2(tmp_path, capsys):
    good = make_run(tmp_path, "good", seed=1) / "run.json"
    document = json.loads(good.read_text())
    cases = {
        "truncated.json": good.read_text()[: len(good.read_text()) // 2],
        "unknown.json": json.dumps({**document, "schema": "talbench/run/v99"}),
        "array.json": "[1, 2]",
        "damaged.json": json.dumps({**document, "verdicts": [{"check": "x"}]}),
        "wrong-type.json": json.dumps({**document, "results": [{**document["results"][0], "data": [1]}]}),
        "bad-status.json": json.dumps({**document, "verdicts": [{**document["verdicts"][0], "status": "great"}]}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        code = main(["compare", str(good), str(tmp_path / name)])
        captured = capsys.readouterr()
        assert code == 2, name
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in captured.err, (name, captured.err)
    assert main(["compare", str(good), str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["compare", str(good), str(good), "--threshold", "ten"]) == 2


def _verdict(check: str, metric: str, status: Status, observed: float, threshold: str) -> Verdict:
    return Verdict(check, metric, Subject(("cp1",)), status, observed, Dimension.BITRATE, threshold, "", "")


def _record(*verdicts: Verdict) -> RunRecord:
    scenario = Scenario("s", "", "", ())
    return RunRecord("r", scenario, "lab", False, (), 0.0, 1.0, (), tuple(verdicts), ())


def test_direction_and_scalars_without_samples():
    # higher is better (a throughput): down by half without samples is reported, not flagged ...
    base = _record(_verdict("tput", "wireguard.throughput", Status.PASS, 900e6, ">= 100Mbit/s"))
    new = _record(_verdict("tput", "wireguard.throughput", Status.PASS, 450e6, ">= 100Mbit/s"))
    (change,) = compare(base, new, {"wireguard.throughput": False}).changes
    assert change.outcome is Outcome.CHANGED and change.lower_is_better is False
    assert change.relative == pytest.approx(-0.5)
    # ... unless the verdict got worse: the scenario's limit says it is a regression
    worse = _record(_verdict("tput", "wireguard.throughput", Status.FAIL, 50e6, ">= 100Mbit/s"))
    (change,) = compare(base, worse, {}).changes  # direction read from the threshold text
    assert change.outcome is Outcome.REGRESSION and change.reason == "verdict pass -> fail"
    # invalid on one side: not compared, not flagged
    invalid = _record(_verdict("tput", "wireguard.throughput", Status.INVALID, 450e6, ">= 100Mbit/s"))
    (change,) = compare(base, invalid, {}).changes
    assert change.outcome is Outcome.NOT_COMPARED
    # judged in one run only
    other = _record(_verdict("cores", "node.cpu_cores", Status.PASS, 4, ">= 4"))
    outcomes = {c.check: c.outcome for c in compare(base, other, {}, CompareSettings()).changes}
    assert outcomes == {"cores": Outcome.ONLY_NEW, "tput": Outcome.ONLY_BASE}
