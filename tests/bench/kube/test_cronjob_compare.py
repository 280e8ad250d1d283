"""CronJob mode's history: a run with ``--keep-results`` compares itself with the previous run of
its scenario kept in the cluster (value-only: verdicts), before keeping its own summary.  The
regressions go into the summary, the output and the metrics; the exit code stays the verdicts'.
Against the API emulator (testbed/kubesim/emulator.py), as a user's scheduled runs would go."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from talbench.bench.kube import cronjob
from talbench.bench.kube import manifests as m
from talbench.bench.model import Status
from talbench.bench.report.history import Kept, since
from talbench.bench.report.metrics import exposition
from testbed.kubesim.emulator import ApiEmulator
from tests.bench.kube.conftest import dispatcher_for, loopback_nodes
from tests.bench.kube.runs import SCENARIO
from tests.bench.report.records import run_record

IMAGE = "registry.example/talbench@sha256:" + "ab" * 32
HOME = "talbench"
CP_PAIRS = {"cp1-cp2", "cp1-cp3", "cp2-cp3"}


def _home(emu: ApiEmulator) -> None:
    docs = cronjob.manifests(cronjob=True, schedule="@daily", namespace=HOME, image=IMAGE)
    ns = next(d for d in docs if d["kind"] == "Namespace")
    emu._put("v1", "namespaces", None, {**ns, "status": {"phase": "Active"}})


def _kept(emu: ApiEmulator) -> dict[str, dict[str, Any]]:
    """run id -> the summary kept in the cluster."""
    return {
        c["metadata"]["labels"][m.LABEL_RUN_ID]: json.loads(c["data"][cronjob.RESULT_KEY])
        for c in emu.objects("configmaps", HOME)
        if c["metadata"].get("labels", {}).get(m.LABEL_COMPONENT) == cronjob.RESULT_COMPONENT
    }


async def _scheduled_run(emu: ApiEmulator, tmp: Path, scenario: Path, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "talbench.bench.cli", "run", "--scenario", str(scenario),
        "--kubeconfig", str(emu.kubeconfig(tmp / "kubeconfig")), "--namespace", HOME, "--out", str(tmp / "out"),
        "--image", IMAGE, "--keep-results", "5", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


@pytest.mark.processes
async def test_a_scheduled_run_lists_its_regressions_since_the_previous_one(tmp_path: Path) -> None:
    """Run 1 has nothing to compare with; run 2 (the same scenario with a warn limit every
    control-plane pair exceeds) lists those pairs as regressions, compared with run 1, in its
    output and its kept summary, and still exits 0 (warn blocks nothing: the verdicts decide);
    run 3 finds run 2's summary damaged, says so in one line and runs on."""
    first = tmp_path / "first.yaml"
    first.write_text(SCENARIO)
    worse = tmp_path / "worse.yaml"
    worse.write_text(SCENARIO.replace("    fail: 15ms\n", "    warn: 1ns\n    fail: 15ms\n", 1))
    async with ApiEmulator(loopback_nodes(tmp_path, base=5)) as emu:
        _home(emu)
        code, out, err = await _scheduled_run(emu, tmp_path, first, "--format", "json")
        assert code == 0, err
        one = json.loads(out)
        assert one["compared_with"] is None and one["regressions"] == []
        assert one["comparison"].startswith("no previous run of scenario kube-e2e")

        code, out, err = await _scheduled_run(emu, tmp_path, worse)
        assert code == 0, err + out  # a regression alone is not a failed check
        kept = _kept(emu)
        (two_id,) = set(kept) - {one["run_id"]}
        two = kept[two_id]
        assert two["compared_with"] == one["run_id"]
        assert two["comparison"] == f"compared with run {one['run_id']}: 3 regressions"
        found = {(r["check"], r["subject"]): (r["before"], r["after"], r["why"]) for r in two["regressions"]}
        assert found == {("control-plane-rtt", p): ("pass", "warn", "verdict pass -> warn") for p in CP_PAIRS}
        lines = out.splitlines()
        at = lines.index(f"compared with run {one['run_id']}: 3 regressions")
        listed = lines[at + 1 : at + 4]
        assert all(line.startswith("  regression: control-plane-rtt cp") for line in listed), listed
        assert {line.split()[2].rstrip(":") for line in listed} == CP_PAIRS
        assert "pass -> warn" in listed[0] and lines[at + 4].startswith("PASSED")

        name = cronjob.result_name(two_id)
        damaged = next(c for c in emu.objects("configmaps", HOME) if c["metadata"]["name"] == name)
        damaged["data"][cronjob.RESULT_KEY] = '{"schema": "talbench/run/v1", "run_id": '
        code, out, err = await _scheduled_run(emu, tmp_path, first, "--format", "json")
        assert code == 0, err
        three = json.loads(out)
        assert three["compared_with"] is None and three["regressions"] == []
        assert three["comparison"].startswith(f"not compared with the previous run: ConfigMap {name}: not JSON")
        assert "\n" not in three["comparison"]
        names = {c["metadata"]["name"] for c in emu.objects("configmaps", HOME)}
        assert cronjob.result_name(three["run_id"]) in names  # kept all the same


# ---- the choice of the previous run, and the metrics (no agents: quick) -----------------------


def _summary(record: Any) -> str:
    from talbench.bench.report.runjson import write as runjson

    return json.dumps(
        {
            "schema": runjson.RUN_SCHEMA,
            "run_id": record.run_id,
            "scenario": record.scenario.name,
            "target": record.target,
            "quick": record.quick,
            "verdicts": [runjson.verdict_dict(v) for v in record.verdicts],
        }
    )


def _better(run_id: str) -> Any:
    """run_record with cp3's fsync passing (run_record's own has it failing) and cp1-cp2 answering."""
    record = run_record(run_id)
    verdicts = tuple(
        replace(v, status=Status.PASS) if (v.check, str(v.subject)) == ("etcd-wal-fsync", "cp3") else v
        for v in record.verdicts
    )
    return replace(record, verdicts=verdicts)


def test_the_first_run_of_a_scenario_has_no_previous_run() -> None:
    other = run_record("other")
    other = replace(other, scenario=replace(other.scenario, name="another"))
    kept = [Kept("talbench-result-other", "other", "another", _summary(other))]
    history = since(kept, run_record("now"))
    assert (history.compared_with, history.regressions) == (None, ())
    assert history.line == "no previous run of scenario control-plane kept in the cluster: nothing to compare with"


def test_the_newest_kept_run_of_the_same_scenario_is_the_one_compared_with() -> None:
    now = run_record("now")
    kept = [
        Kept("talbench-result-now", "now", "control-plane", _summary(now)),  # its own: skipped
        Kept("talbench-result-x", "x", "another", "{damaged"),  # another scenario: not even read
        Kept("talbench-result-old2", "old2", None, _summary(_better("old2"))),  # unlabelled: read
        Kept("talbench-result-old1", "old1", "control-plane", _summary(_better("old1"))),
    ]
    history = since(kept, now)
    assert history.compared_with == "old2"
    assert [(c.check, str(c.subject), c.reason) for c in history.regressions] == [
        ("etcd-wal-fsync", "cp3", "verdict pass -> fail")
    ]
    assert history.document()["regressions"][0] == {
        "check": "etcd-wal-fsync",
        "metric": now.verdicts[-1].metric,
        "subject": "cp3",
        "before": "pass",
        "after": "fail",
        "observed_before": 0.012,
        "observed_after": 0.012,
        "unit": "duration",
        "why": "verdict pass -> fail",
    }


def test_a_figure_that_moved_within_its_verdict_is_no_regression_without_samples() -> None:
    """Value-only: run_record scaled x2 moves every figure, no verdict changes: nothing flagged."""
    kept = [Kept("talbench-result-a", "a", "control-plane", _summary(run_record("a")))]
    history = since(kept, run_record("b", scale=2.0))
    assert history.compared_with == "a" and history.regressions == ()
    assert history.line == "compared with run a: 0 regressions"


def test_a_damaged_or_truncated_previous_summary_is_one_line() -> None:
    now = run_record("now")
    for text, why in (
        ("{not json", "not JSON"),
        (json.dumps({"run_id": "p", "scenario": "control-plane", "verdicts": [{"check": 1}]}), "damaged"),
        (json.dumps({"run_id": "p", "scenario": "control-plane", "truncated": "too big"}), "truncated"),
        (None, "holds no summary"),
    ):
        history = since([Kept("talbench-result-p", "p", "control-plane", text)], now)
        assert history.compared_with is None and history.regressions == ()
        assert history.line.startswith("not compared with the previous run: ConfigMap talbench-result-p: ")
        assert why in history.line and "\n" not in history.line


def test_the_regressions_are_metrics_without_the_run_id() -> None:
    kept = [Kept("talbench-result-old", "old", "control-plane", _summary(_better("old")))]
    now = run_record("now")
    text = exposition(now, since(kept, now)).decode()
    regressed = [line for line in text.splitlines() if line.startswith("talbench_check_regressed{")]
    assert len(regressed) == len(now.verdicts)
    assert [line for line in regressed if line.endswith(" 1.0")] == [
        f'talbench_check_regressed{{check="etcd-wal-fsync",metric="{now.verdicts[-1].metric}",subject="cp3"}} 1.0'
    ]
    assert "talbench_run_regressions 1.0" in text.splitlines()
    assert "run_id" not in "".join(regressed)
    # not compared: no regression series at all (absent, not a misleading 0)
    assert "talbench_check_regressed" not in exposition(now, since([], now)).decode()


async def test_kept_summaries_are_read_newest_first_with_their_scenario(cluster: ApiEmulator, tmp_path: Path) -> None:
    _home(cluster)
    dispatcher = dispatcher_for(cluster, tmp_path, namespace=HOME, access="direct")
    assert await dispatcher.kept_summaries() == ()
    for run in ("run-a", "run-b"):
        await dispatcher.keep_summary(run, {"run_id": run, "scenario": "kube-e2e", "verdicts": []}, keep=5)
    kept = await dispatcher.kept_summaries()
    assert [(k.run_id, k.scenario) for k in kept] == [("run-b", "kube-e2e"), ("run-a", "kube-e2e")]
    assert json.loads(kept[0].text or "")["run_id"] == "run-b"
