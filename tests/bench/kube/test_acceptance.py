"""scenarios/acceptance.yaml is the pre-cutover gate: it includes every other built-in scenario,
so it holds each of their checks with the very definition written in that scenario's file or in
the ``_fragment.yaml`` it includes (name, metric, scope, limits, source), their probe settings
(merged; acceptance.yaml chooses where two differ), and the topology and KubePrism checks only it
has, each written once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from talbench.bench.model import Check
from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of
from talbench.bench.scenario import Composition, builtin_scenarios, load_composition


def composed(path: Path) -> Composition:
    drivers = default_drivers()

    def validate(probe: str, raw: Mapping[str, Any]) -> Any:
        return drivers[probe].settings(raw, quick=False)

    return load_composition(path, metrics_of(drivers), validate)


def definition(check: Check) -> tuple[Any, ...]:
    return (check.name, check.metric, check.scope, str(check.warn), str(check.fail), check.source, check.description)


def test_acceptance_holds_every_check_of_every_other_scenario_identically() -> None:
    paths = builtin_scenarios()
    acceptance = composed(paths["acceptance"])
    have = {c.name: definition(c) for c in acceptance.scenario.checks}
    assert set(acceptance.includes) == set(paths) - {"acceptance"}
    for name, path in paths.items():
        if name == "acceptance":
            continue
        for check in composed(path).scenario.checks:
            assert have.get(check.name) == definition(check), f"acceptance differs from {name}.yaml on {check.name}"


def test_acceptance_runs_every_other_scenarios_settings_unless_it_chooses() -> None:
    paths = builtin_scenarios()
    acceptance = composed(paths["acceptance"])
    for name, path in paths.items():
        if name == "acceptance":
            continue
        for probe, settings in composed(path).scenario.probes.items():
            assert probe in acceptance.scenario.probes, f"acceptance has no settings for {name}.yaml's probe {probe}"
            for key, value in settings.items():
                origin = acceptance.setting_origins[(probe, key)]
                chosen = origin.rsplit(":", 1)[0] == str(paths["acceptance"])
                assert chosen or acceptance.scenario.probes[probe][key] == value, f"{probe}.{key} of {name}.yaml"
    # where control-plane.yaml and kubespan.yaml differ, the gate samples worker pairs as kubespan does
    wireguard = acceptance.scenario.probes["wireguard"]
    assert (wireguard["duration"], wireguard["max_other_pairs"]) == ("10s", 6)


def test_acceptance_writes_only_its_own_checks() -> None:
    paths = builtin_scenarios()
    written = yaml.safe_load(paths["acceptance"].read_text(encoding="utf-8"))
    others = {c.name for name, path in paths.items() if name != "acceptance" for c in composed(path).scenario.checks}
    own = [check["name"] for check in written.get("checks", [])]
    assert own and not set(own) & others


def test_acceptance_has_the_topology_and_kubeprism_checks() -> None:
    acceptance = composed(builtin_scenarios()["acceptance"]).scenario
    metrics = {c.metric for c in acceptance.checks}
    assert {
        "topology.control_planes",
        "topology.control_plane_fault_tolerance",
        "topology.control_planes_even",
        "topology.control_plane_untainted",
        "topology.control_plane_workloads",
        "kubeprism.answered",
    } <= metrics
    assert len({c.name for c in acceptance.checks}) == len(acceptance.checks)


def test_acceptance_takes_every_check_from_the_one_file_that_writes_it() -> None:
    paths = builtin_scenarios()
    acceptance = composed(paths["acceptance"])
    folder = paths["acceptance"].parent
    for check in acceptance.scenario.checks:
        origin = Path(acceptance.check_origins[check.name].rsplit(":", 1)[0])
        assert origin.parent == folder, f"{check.name} comes from {origin}"
        writers = [
            path.name
            for path in sorted(folder.glob("*.yaml"))
            if check.name in {c["name"] for c in yaml.safe_load(path.read_text(encoding="utf-8")).get("checks") or []}
        ]
        assert writers == [origin.name], f"{check.name} is written in {writers}"
