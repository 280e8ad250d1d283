"""The CLI as a user runs it: a real `talbench` process, its exit code and its stderr."""

import pytest

from tests.bench.cli_helpers import assert_one_line_error, talbench

pytestmark = pytest.mark.processes


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
    assert_one_line_error(
        talbench("run", "--scenario", str(bad), "--target", "lab"), 2, f"{bad}:4", "unknown metric 'rtt.p42'"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("run",),
        ("run", "--scenario", "control-plane", "--format", "xml"),
        ("bogus",),
        ("run", "--scenario", "control-plane", "--only", "gpu", "--target", "lab"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args):
    result = talbench(*args)
    assert_one_line_error(result, 2)


def test_bad_delay_option_is_a_usage_error():
    result = talbench("run", "--scenario", "control-plane", "--target", "lab", "--delay", "cp9=10ms")
    assert_one_line_error(result, 2, "cp9")


def test_an_image_for_the_lab_target_needs_a_lab_the_test_bed_brought_up(tmp_path):
    """Agents in containers are the test bed's (testbed/, not in the product): run --target lab
    --image only uses a lab it brought up from that archive."""
    argv = ("run", "--scenario", "control-plane", "--target", "lab", "--lab-root", str(tmp_path))
    result = talbench(*argv, "--image", str(tmp_path / "talbench.oci.tar"))
    assert_one_line_error(result, 2, "python -m testbed.kubelab up --image")


def test_scenarios_lists_checks_thresholds_and_sources():
    result = talbench("scenarios")
    assert result.returncode == 0, result.stderr
    assert "control-plane-rtt" in result.stdout
    assert "< 15ms" in result.stdout
    assert "source:" in result.stdout and "Reference Architecture" in result.stdout


def scenario_blocks(stdout: str) -> dict[str, list[str]]:
    """``talbench scenarios``' output: scenario name -> its lines (blocks end at a blank line)."""
    blocks: dict[str, list[str]] = {}
    for block in stdout.strip().split("\n\n"):
        header, *lines = block.splitlines()
        blocks[header.split(":", 1)[0]] = lines
    return blocks


def checks_with_sources(lines: list[str]) -> list[tuple[str, list[str]]]:
    checks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("  ") and not line.startswith("   ") and " over " in line:
            checks.append((line.split()[0], []))
        elif line.startswith("      source: ") and checks:
            checks[-1][1].append(line.removeprefix("      source: "))
    return checks


def test_scenarios_shows_each_check_once_per_scenario_with_one_source():
    result = talbench("scenarios")
    assert result.returncode == 0, result.stderr
    blocks = scenario_blocks(result.stdout)
    assert {"acceptance", "control-plane", "kubespan", "storage"} <= set(blocks)
    source_of: dict[str, str] = {}
    for name, lines in blocks.items():
        checks = checks_with_sources(lines)
        names = [check for check, _ in checks]
        assert len(names) == len(set(names)), f"{name}: a check is shown twice"
        for check, sources in checks:
            assert len(sources) == 1, f"{name}: {check} has {len(sources)} sources"
            assert source_of.setdefault(check, sources[0]) == sources[0], f"{check}: two source texts"
    acceptance = {check for check, _ in checks_with_sources(blocks["acceptance"])}
    for name in ("control-plane", "kubespan", "storage"):
        assert {check for check, _ in checks_with_sources(blocks[name])} <= acceptance
    assert "  includes: control-plane, storage, kubespan" in blocks["acceptance"]


def test_scenarios_shows_the_declared_parameters_with_the_scenarios_values():
    result = talbench("scenarios")
    assert result.returncode == 0, result.stderr
    lines = scenario_blocks(result.stdout)["control-plane"]
    rtt = lines.index("    rtt:")
    header, *rows = lines[rtt + 1 : rtt + 10]
    assert header.split() == ["parameter", "scenario", "default", "bounds", "meaning"]
    interval = next(row for row in rows if row.split()[0] == "interval")
    assert interval.split()[1:3] == ["20ms", "20ms"] and "(seconds)" in interval and ">= 0.001" in interval
    payload = next(row for row in rows if row.split()[0] == "payload")
    assert payload.split()[1:3] == ["-", "64"]  # not set by the scenario: its default
    min_samples = next(row for row in rows if row.split()[0] == "min_samples")
    assert min_samples.endswith("[coordinator only]")


def test_an_include_error_exits_2_with_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\ninclude: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("name: b\ninclude:\n  - control-plane\n  - a.yaml\n")
    result = talbench("run", "--scenario", str(tmp_path / "a.yaml"), "--target", "lab")
    assert_one_line_error(result, 2, f"{tmp_path / 'b.yaml'}:4", "include cycle")
