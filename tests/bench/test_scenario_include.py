"""Scenario composition (``include``): included checks keep their file's definition, a check
defined twice must be identical, probe settings merge with the including file's word last, and
every include error (cycle, missing, conflicting duplicate) is one ScenarioError line with
file:line.  The shipped files: every check is written in exactly one of them (checks that several
scenarios share live in ``_fragment.yaml`` files, includable but never listed or run as a scenario)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from talbench.bench import scenario
from talbench.bench.errors import ScenarioError, UsageError
from talbench.bench.probes import default_drivers
from talbench.bench.probes.etcd_live.driver import CHECKS as LIVE_ETCD_CHECKS
from talbench.bench.run import metrics_of

DRIVERS = default_drivers()
METRICS = metrics_of(DRIVERS)


def validate(probe: str, raw: Mapping[str, Any]) -> Any:
    return DRIVERS[probe].settings(raw, quick=False)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def compose(path: Path) -> scenario.Composition:
    return scenario.load_composition(path, METRICS, validate)


def one_line_error(path: Path, pattern: str) -> str:
    with pytest.raises(ScenarioError, match=pattern) as info:
        compose(path)
    message = str(info.value)
    assert "\n" not in message
    return message


RTT_A = """\
    name: a
    probes:
      rtt:
        count: 200
        warmup: 3
    checks:
      - name: cp-rtt
        metric: rtt.p99
        scope: control-plane-pairs
        fail: 15ms
        source: the reference architecture
"""

RTT_B = """\
    name: b
    probes:
      rtt:
        count: 250
        timeout: 2s
    checks:
      - name: cp-rtt
        metric: rtt.p99
        scope: control-plane-pairs
        fail: 15ms
        source: the reference architecture
      - name: loss
        metric: rtt.loss
        scope: all-pairs
        source: talbench
"""


def test_a_schema_1_file_without_include_still_parses(tmp_path: Path) -> None:
    composed = compose(write(tmp_path, "a.yaml", RTT_A))
    assert composed.includes == ()
    assert [c.name for c in composed.scenario.checks] == ["cp-rtt"]
    assert composed.check_origins == {"cp-rtt": f"{tmp_path / 'a.yaml'}:7"}


def test_included_checks_keep_their_definition_then_own_checks_follow(tmp_path: Path) -> None:
    write(
        tmp_path, "parts/a.yaml", RTT_A.replace("count: 200", "count: 300").replace("warmup: 3", "warmup: 5")
    )  # control-plane's
    top = write(
        tmp_path,
        "top.yaml",
        """\
        name: top
        description: mine
        include: [parts/a.yaml, control-plane]
        checks:
          - name: kubeprism
            metric: kubeprism.answered
            scope: all-nodes
            fail: 1 %
            source: the reference architecture, KubePrism
    """,
    )
    composed = compose(top)
    names = [c.name for c in composed.scenario.checks]
    control_plane = scenario.load(scenario.resolve("control-plane"), METRICS)
    assert names == ["cp-rtt"] + [c.name for c in control_plane.checks] + ["kubeprism"]
    assert (composed.scenario.name, composed.scenario.description) == ("top", "mine")
    assert composed.includes == ("parts/a.yaml", "control-plane")
    assert composed.check_origins["cp-rtt"] == f"{tmp_path / 'parts/a.yaml'}:7"
    assert composed.check_origins["kubeprism"] == f"{top}:5"
    included = next(c for c in composed.scenario.checks if c.name == "control-plane-rtt")
    assert included == next(c for c in control_plane.checks if c.name == "control-plane-rtt")


def test_a_check_defined_identically_twice_is_kept_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    write(tmp_path, "b.yaml", RTT_B.replace("count: 250", "count: 200"))
    composed = compose(write(tmp_path, "top.yaml", "name: top\ninclude: [a.yaml, b.yaml]\n"))
    assert [c.name for c in composed.scenario.checks] == ["cp-rtt", "loss"]
    assert composed.check_origins["cp-rtt"] == f"{tmp_path / 'a.yaml'}:7"


def test_a_check_defined_differently_in_two_included_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    write(
        tmp_path,
        "b.yaml",
        RTT_B.replace("count: 250", "count: 200").replace("source: the reference architecture", "source: other"),
    )
    top = write(tmp_path, "top.yaml", "name: top\ninclude:\n  - a.yaml\n  - b.yaml\n")
    message = one_line_error(top, "check 'cp-rtt' is defined differently")
    assert message.startswith(f"{top}:4: ")
    assert f"{tmp_path / 'a.yaml'}:7" in message and f"{tmp_path / 'b.yaml'}:7" in message
    assert "(source differ)" in message


def test_the_including_file_cannot_redefine_an_included_check(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    including = textwrap.dedent(RTT_A).replace("name: a\n", "name: top\ninclude: [a.yaml]\n")
    top = write(tmp_path, "top.yaml", including.replace("fail: 15ms", "fail: 20ms"))
    message = one_line_error(top, "check 'cp-rtt' differs from its definition")
    assert message.startswith(f"{top}:8: ") and f"{tmp_path / 'a.yaml'}:7" in message and "fail differ" in message
    # written identically, it is the same check: kept once
    same = write(tmp_path, "same.yaml", including)
    assert [c.name for c in compose(same).scenario.checks] == ["cp-rtt"]


def test_settings_merge_and_the_including_file_overrides(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def record(probe: str, raw: Mapping[str, Any]) -> None:
        seen[probe] = validate(probe, raw)

    write(tmp_path, "a.yaml", RTT_A)
    top = write(tmp_path, "top.yaml", "name: top\ninclude: [a.yaml]\nprobes:\n  rtt:\n    warmup: 7\n")
    composed = scenario.load_composition(top, METRICS, record)
    assert composed.scenario.probes == {"rtt": {"count": 200, "warmup": 7}}
    assert composed.setting_origins[("rtt", "count")] == f"{tmp_path / 'a.yaml'}:4"
    assert composed.setting_origins[("rtt", "warmup")] == f"{top}:5"
    assert (seen["rtt"].count, seen["rtt"].warmup) == (200, 7)  # the callback ends with the merged block


def test_conflicting_settings_of_two_included_files_name_both_unless_the_includer_chooses(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    write(tmp_path, "b.yaml", RTT_B)
    top = write(tmp_path, "top.yaml", "name: top\ninclude: [a.yaml, b.yaml]\n")
    message = one_line_error(top, "probe 'rtt' setting 'count' differs between included files")
    assert message.startswith(f"{top}:2: ")
    assert f"{tmp_path / 'a.yaml'}:4 has 200" in message and f"{tmp_path / 'b.yaml'}:4 has 250" in message
    chosen = write(tmp_path, "chosen.yaml", "name: top\ninclude: [a.yaml, b.yaml]\nprobes:\n  rtt:\n    count: 250\n")
    probes = compose(chosen).scenario.probes
    assert probes == {"rtt": {"count": 250, "warmup": 3, "timeout": "2s"}}


def test_the_merged_settings_are_validated_at_the_includers_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    top = write(tmp_path, "top.yaml", "name: top\ninclude: [a.yaml]\nprobes:\n  rtt:\n    count: 0\n")
    message = one_line_error(top, "probe 'rtt': count must be")
    assert message.startswith(f"{top}:4: ")


def test_an_include_cycle_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: a\ninclude: [b.yaml]\n")
    b = write(tmp_path, "b.yaml", "name: b\nchecks: []\ninclude:\n  - a.yaml\n")
    message = one_line_error(a, "include cycle")
    assert message.startswith(f"{b}:4: ") and message.endswith(f"{a} -> {b} -> {tmp_path / 'a.yaml'}")
    itself = write(tmp_path, "self.yaml", "name: s\ninclude: [self.yaml]\n")
    assert one_line_error(itself, "include cycle").startswith(f"{itself}:2: ")


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ("[missing.yaml]", r"top\.yaml:2: include 'missing.yaml': no such file .*missing\.yaml$"),
        ("[sub/missing.yml]", r"top\.yaml:2: include 'sub/missing.yml': no such file"),
        ("[nope]", r"top\.yaml:2: include 'nope': no built-in scenario of that name \(built-in: .*control-plane"),
        ("control-plane", r"top\.yaml:2: 'include' must be a list"),
        ("[3]", r"top\.yaml:2: 'include' must be a list"),
    ],
)
def test_a_missing_or_malformed_include_is_one_line_with_file_and_line(
    tmp_path: Path, entries: str, pattern: str
) -> None:
    one_line_error(write(tmp_path, "top.yaml", f"name: top\ninclude: {entries}\n"), pattern)


def test_without_include_checks_stay_required(tmp_path: Path) -> None:
    one_line_error(
        write(tmp_path, "top.yaml", "name: top\ninclude: []\n"), r"top\.yaml:1: 'checks' must be a non-empty list"
    )


def test_an_error_inside_an_included_file_names_that_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", RTT_A.replace("metric: rtt.p99", "metric: rtt.p42"))
    top = write(tmp_path, "top.yaml", "name: top\ninclude: [bad.yaml]\n")
    assert one_line_error(top, "unknown metric 'rtt.p42'").startswith(f"{bad}:8: ")


def test_parse_resolves_relative_includes_next_to_where(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", RTT_A)
    parsed = scenario.parse("name: t\ninclude: [a.yaml]\n", str(tmp_path / "t.yaml"), METRICS, validate)
    assert [c.name for c in parsed.checks] == ["cp-rtt"]


# ---------------------------------------------------------------------- the shipped scenario files

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHARED = {
    "_etcd-disk": (
        {"control-plane", "storage"},
        {"control-plane-fsync", "control-plane-nvme", "control-plane-disk-size"},
    ),
    "_kubespan-limits": (
        {"control-plane", "kubespan"},
        {"control-plane-tunnel-rtt", "kubespan-cluster-size", "kubespan-on-storage-nodes"},
    ),
}


def written() -> dict[Path, Any]:
    """Every YAML file under scenarios/ (fragments included), as written."""
    files = sorted(SCENARIOS.rglob("*.y*ml"))
    assert files
    return {path: yaml.safe_load(path.read_text(encoding="utf-8")) for path in files}


def test_every_check_is_written_in_exactly_one_scenario_file() -> None:
    defined: dict[str, list[str]] = {}
    for path, doc in written().items():
        for check in doc.get("checks") or []:
            defined.setdefault(check["name"], []).append(path.name)
    twice = {name: files for name, files in defined.items() if len(files) != 1}
    assert not twice, f"checks written in more than one file (write them once, in a _fragment.yaml): {twice}"


def test_every_scenario_file_is_packaged() -> None:
    config = tomllib.loads((SCENARIOS.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = config["package-data"]["talbench.scenarios"]  # globs relative to scenarios/, as setuptools reads them
    packaged = {path for pattern in patterns for path in SCENARIOS.glob(pattern)}
    for path in written():
        assert path in packaged, f"{path.relative_to(SCENARIOS)} is not in pyproject's package-data"


def test_shared_checks_live_in_fragments_that_their_scenarios_include() -> None:
    builtin = scenario.builtin_scenarios()
    for fragment, (includers, names) in SHARED.items():
        doc = yaml.safe_load((SCENARIOS / f"{fragment}.yaml").read_text(encoding="utf-8"))
        assert {check["name"] for check in doc["checks"]} == names
        for name in includers:
            composed = compose(builtin[name])
            assert fragment in composed.includes
            assert names <= {c.name for c in composed.scenario.checks}
            assert all(composed.check_origins[c].startswith(f"{builtin[name].parent / fragment}.yaml:") for c in names)
    # a fragment nobody includes would be dead text, unless talbench reads it itself: the live-etcd
    # probe's checks join a run with --etcd-endpoints (bench/probes/etcd_live/driver.py)
    included = {entry for path in builtin.values() for entry in compose(path).includes} | {LIVE_ETCD_CHECKS}
    assert {path.stem for path in written() if path.stem.startswith("_")} <= included


def test_a_fragment_is_includable_by_name_but_is_not_a_scenario(tmp_path: Path) -> None:
    builtin = scenario.builtin_scenarios()
    assert {"acceptance", "control-plane", "kubespan", "storage"} <= set(builtin)
    assert not [name for name in builtin if name.startswith("_")]
    refused = r"unknown scenario '_etcd-disk' \(built-in: [^_]*control-plane[^_]*;"  # no fragment offered
    with pytest.raises(UsageError, match=refused):
        scenario.resolve("_etcd-disk")
    top = compose(write(tmp_path, "top.yaml", "name: top\ninclude: [_etcd-disk]\n"))
    disk = ["control-plane-fsync", "control-plane-nvme", "control-plane-disk-size"]
    assert [c.name for c in top.scenario.checks] == disk  # the fragment's order
    assert set(top.scenario.probes) == {"fsync", "node"}


def talbench(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "talbench.bench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.processes
def test_talbench_scenarios_lists_no_fragment_and_run_refuses_one() -> None:
    listed = talbench("scenarios")
    assert listed.returncode == 0, listed.stderr
    headers = [block.splitlines()[0].split(":", 1)[0] for block in listed.stdout.strip().split("\n\n")]
    assert sorted(headers) == sorted(scenario.builtin_scenarios())
    assert not [header for header in headers if header.startswith("_")]
    for fragment in SHARED:
        refused = talbench("run", "--scenario", fragment, "--target", "lab")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
        assert f"unknown scenario {fragment!r}" in refused.stderr and "Traceback" not in refused.stderr
