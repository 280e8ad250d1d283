"""The CLI as a user runs it: a real `talbench` process, its exit code and its stderr."""

import subprocess
import sys

import pytest


def talbench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_unknown_scenario_exits_2_with_one_line():
    assert_one_line_error(talbench("run", "--scenario", "nope", "--target", "lab"), 2, "unknown scenario 'nope'")


def test_yaml_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchecks:\n  - name: x\n    metric: [rtt.p99\n")
    assert_one_line_error(talbench("run", "--scenario", str(bad), "--target", "lab"), 2, str(bad), "YAML error")
    assert f"{bad}:5" in talbench("run", "--scenario", str(bad)).stderr


def test_unknown_metric_exits_2_naming_file_line_and_metric(tmp_path):
    bad = tmp_path / "metric.yaml"
    bad.write_text("name: m\nchecks:\n  - name: x\n    metric: rtt.p42\n    scope: all-pairs\n    source: me\n")
    assert_one_line_error(talbench("run", "--scenario", str(bad), "--target", "lab"), 2, f"{bad}:4", "unknown metric 'rtt.p42'")


@pytest.mark.parametrize(
    "args",
    [("run",), ("run", "--scenario", "control-plane", "--format", "xml"), ("bogus",), ("run", "--scenario", "control-plane", "--only", "gpu", "--target", "lab")],
)
def test_usage_errors_exit_2_with_one_line(args):
    result = talbench(*args)
    assert_one_line_error(result, 2)


def test_bad_delay_option_is_a_usage_error():
    result = talbench("run", "--scenario", "control-plane", "--target", "lab", "--delay", "cp9=10ms")
    assert_one_line_error(result, 2, "cp9")


def test_scenarios_lists_checks_thresholds_and_sources():
    result = talbench("scenarios")
    assert result.returncode == 0, result.stderr
    assert "control-plane-rtt" in result.stdout
    assert "< 15ms" in result.stdout
    assert "source:" in result.stdout and "Reference Architecture" in result.stdout
