"""`talbench report RUN_DIR [--scenario NAME] [--output FILE]` as a user runs it: the page it
writes, its exit code (as `run`'s: 1 when a verdict blocks), re-judging stored raw results against
another scenario's thresholds, and one line with exit 2 for anything it cannot read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from talbench.bench.cli import main
from talbench.bench.report.runjson import write as runjson
from tests.bench.report.html_text import text_of
from tests.bench.report.records import judged_record

STRICT = """\
schema: 1
name: strict-rtt
checks:
  - name: sub-millisecond-rtt
    metric: rtt.p99
    scope: all-pairs
    fail: 100us
    source: a test's own limit, that no pair meets
  - name: etcd-fsync
    metric: fsync.p99
    scope: control-plane-nodes
    fail: 10ms
    source: not measured by the stored run
"""

LOOSE = """\
schema: 1
name: loose-rtt
checks:
  - name: rtt-under-a-second
    metric: rtt.p99
    scope: control-plane-pairs
    fail: 1s
    source: a test's own limit, that every pair meets
"""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as `talbench run` leaves it (run.json from the judged record)."""
    record = judged_record()
    directory = tmp_path / record.run_id
    directory.mkdir()
    (directory / "run.json").write_text(runjson.dumps(record))
    return directory


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def test_report_renders_the_page_from_run_json(run_dir, capsys):
    code, out, err = report(capsys, str(run_dir))
    page = run_dir / "report.html"
    assert code == 1, err  # the stored run has failing verdicts, as `run` would say
    assert page.is_file() and str(page) in out and "FAILED" in out
    text = text_of(page.read_text())
    assert "20261126-010000-beef" in text and "control-plane-rtt" in text and "26 ms (crosses < 15ms" in text


def test_report_takes_the_run_json_itself_and_an_output_file(run_dir, tmp_path, capsys):
    target = tmp_path / "elsewhere" / "page.html"
    code, out, _ = report(capsys, str(run_dir / "run.json"), "--output", str(target))
    assert code == 1 and target.is_file() and str(target) in out
    assert not (run_dir / "report.html").exists()


def test_rejudging_against_a_stricter_scenario_fails_every_pair(run_dir, tmp_path, capsys):
    strict = tmp_path / "strict.yaml"
    strict.write_text(STRICT)
    code, out, err = report(capsys, str(run_dir), "--scenario", str(strict))
    assert code == 1, err
    page = run_dir / "report-strict-rtt.html"
    assert str(page) in out and not (run_dir / "report.html").exists()  # the run's own page is kept apart
    text = text_of(page.read_text())
    assert "Re-judged by 'talbench report' against scenario file" in text
    assert "Left out, their probe did not run: etcd-fsync" in text
    assert "6 fail" in text  # every pair of the 4 nodes crosses 100us
    assert "control-plane-rtt" not in text  # the original scenario's checks are gone


def test_rejudging_against_a_looser_scenario_passes(run_dir, tmp_path, capsys):
    loose = tmp_path / "loose.yaml"
    loose.write_text(LOOSE)
    code, out, err = report(capsys, str(run_dir), "--scenario", str(loose))
    assert code == 0, err
    assert "PASSED: 3 pass" in out
    stored = json.loads((run_dir / "run.json").read_text())
    assert {v["status"] for v in stored["verdicts"]} >= {"fail"}  # run.json itself is untouched


def test_rejudging_against_a_built_in_scenario_by_name(run_dir, capsys):
    code, out, err = report(capsys, str(run_dir), "--scenario", "acceptance")
    assert "report-acceptance.html" in out
    assert code == 1, err  # acceptance holds control-plane's RTT checks: cp3's pairs still fail
    text = text_of((run_dir / "report-acceptance.html").read_text())
    assert "talbench: acceptance on lab" in text and "control-plane-rtt" in text and "2 fail" in text
    assert "Left out, their probe did not run:" in text and "control-plane-fsync" in text


def test_rejudging_against_a_scenario_that_shares_no_probe_is_one_line_exit_2(run_dir, capsys):
    code, _, err = report(capsys, str(run_dir), "--scenario", "kubespan")
    assert code == 2
    assert_one_line(err, "kubespan", "judges no probe", "rtt")
    assert not list(run_dir.glob("report*.html"))


def test_missing_run_directory_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = report(capsys, str(tmp_path / "nowhere"))
    assert code == 2
    assert_one_line(err, "nowhere", "no such file")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"schema": "talbench/run/v1", "run_id": ', ("not JSON", "line 1")),
        ('{"schema": "talbench/run/v9"}', ("unknown schema", "talbench/run/v9", "talbench/run/v1")),
        ("[1, 2]", ("not a talbench run.json",)),
        ('{"schema": "talbench/run/v1", "run_id": "x"}', ("damaged", "scenario")),
    ],
)
def test_damaged_or_unknown_run_json_is_one_line_exit_2(tmp_path, capsys, content, words):
    (tmp_path / "run.json").write_text(content)
    code, _, err = report(capsys, str(tmp_path))
    assert code == 2
    assert_one_line(err, "run.json", *words)
    assert not (tmp_path / "report.html").exists()


def test_unknown_scenario_is_one_line_exit_2(run_dir, capsys):
    code, _, err = report(capsys, str(run_dir), "--scenario", "no-such-scenario")
    assert code == 2
    assert_one_line(err, "no-such-scenario")


@pytest.mark.processes
def test_a_damaged_file_from_a_real_process_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text('{"schema": "talbench/run/v1", "results": [}')
    result = subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert_one_line(result.stderr, "not JSON")
    assert result.stdout == ""
