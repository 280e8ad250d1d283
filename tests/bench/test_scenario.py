import textwrap

import pytest

from talbench.bench import scenario
from talbench.bench.errors import ScenarioError, UsageError
from talbench.bench.model import Scope
from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of

METRICS = metrics_of(default_drivers())


def parse(text: str):
    return scenario.parse(textwrap.dedent(text), "s.yaml", METRICS)


GOOD = """\
    schema: 1
    name: demo
    checks:
      - name: cp-rtt
        metric: rtt.p99
        scope: control-plane-pairs
        warn: 10ms
        fail: 15ms
        source: reference architecture
"""


def test_parses_a_check_with_units_scope_and_source():
    parsed = parse(GOOD)
    (check,) = parsed.checks
    assert (check.name, check.metric, check.scope, check.probe) == (
        "cp-rtt",
        "rtt.p99",
        Scope.CONTROL_PLANE_PAIRS,
        "rtt",
    )
    assert check.fail.value == pytest.approx(0.015)
    assert check.warn.value == pytest.approx(0.010)
    assert check.line == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nchecks: [\n", r"s\.yaml:3:1: YAML error"),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p999\n    scope: all-pairs\n    source: s\n",
            r"s\.yaml:4: check 'a': unknown metric 'rtt.p999'",
        ),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p99\n    scope: galaxy\n    source: s\n",
            r"s\.yaml:5: .*unknown scope 'galaxy'",
        ),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p99\n    scope: all-nodes\n    source: s\n",
            r"per pair, scope all-nodes is not",
        ),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p99\n    scope: all-pairs\n    fail: 15\n    source: s\n",
            r"s\.yaml:6: .*fail: 15 needs a unit",
        ),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p99\n    scope: all-pairs\n    fail: 15ms\n",
            r"needs its 'source'",
        ),
        (
            "name: x\nchecks:\n  - name: a\n    metric: rtt.p99\n    scope: all-pairs\n    warn: 20ms\n    fail: 15ms\n    source: s\n",
            r"warn 20ms lies beyond fail 15ms",
        ),
        ("name: x\ncheks: []\n", r"s\.yaml:2: unknown key 'cheks'"),
        ("schema: 2\nname: x\nchecks: []\n", r"schema 2 is not supported"),
        ("- just\n- a list\n", r"a scenario is a mapping"),
        (
            "name: x\nprobes:\n  rtt:\n    count: 0\nchecks:\n  - {name: a, metric: rtt.p99, scope: all-pairs, source: s}\n",
            r"s\.yaml:3: probe 'rtt': count must be",
        ),
    ],
)
def test_errors_name_file_line_and_problem(text, expected):
    drivers = default_drivers()
    with pytest.raises(ScenarioError, match=expected) as info:
        scenario.parse(text, "s.yaml", METRICS, lambda probe, raw: drivers[probe].settings(raw, quick=False))
    assert "\n" not in str(info.value)


def test_duplicate_check_names_are_refused():
    with pytest.raises(ScenarioError, match="duplicate check name 'cp-rtt'"):
        parse(GOOD + GOOD.split("checks:\n", 1)[1])


def test_resolve_builtin_and_unknown(tmp_path):
    assert scenario.resolve("control-plane").name == "control-plane.yaml"
    with pytest.raises(UsageError, match="unknown scenario 'nope'"):
        scenario.resolve("nope")
    with pytest.raises(UsageError, match="does not exist"):
        scenario.resolve(str(tmp_path / "missing.yaml"))


def test_every_builtin_scenario_loads_and_cites_sources():
    drivers = default_drivers()
    builtin = scenario.builtin_scenarios()
    assert "control-plane" in builtin
    for name, path in builtin.items():
        loaded = scenario.load(path, METRICS, lambda probe, raw: drivers[probe].settings(raw, quick=False))
        assert loaded.name == name
        assert all(len(check.source) > 20 for check in loaded.checks)


def test_control_plane_scenario_holds_the_reference_architecture_rtt_limit():
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    check = next(c for c in loaded.checks if c.name == "control-plane-rtt")
    assert check.fail.value == pytest.approx(0.015)
    assert "15ms RTT" in check.source


def test_probe_settings_are_plain_yaml_values():
    loaded = scenario.load(scenario.resolve("control-plane"), METRICS)
    namespaces = loaded.probes["topology"]["system_namespaces"]
    assert type(namespaces) is list and namespaces == ["kube-system", "kube-public", "kube-node-lease"]
    assert all(type(block) is dict for block in loaded.probes.values())
