"""scenarios/acceptance.yaml is the pre-cutover gate: it loads with the real metrics and probe
settings, holds every check of every other built-in scenario (same metric, scope and limits),
and the topology and KubePrism checks."""

from __future__ import annotations

from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of
from talbench.bench.scenario import builtin_scenarios, load


def loaded(path):
    drivers = default_drivers()
    return load(path, metrics_of(drivers), lambda probe, raw: drivers[probe].settings(raw, quick=False))


def key(check):
    return (check.metric, check.scope, str(check.warn), str(check.fail))


def test_acceptance_holds_every_check_of_every_other_scenario():
    paths = builtin_scenarios()
    acceptance = loaded(paths["acceptance"])
    have = {key(c) for c in acceptance.checks}
    for name, path in paths.items():
        if name == "acceptance":
            continue
        missing = [c.name for c in loaded(path).checks if key(c) not in have]
        assert not missing, f"scenarios/acceptance.yaml lacks {name}.yaml's checks {missing}"
        # settings may differ (the gate samples worker pairs for WireGuard, as kubespan.yaml does),
        # but every probe another scenario tunes is tuned here too, not left to defaults
        for probe in loaded(path).probes:
            assert probe in acceptance.probes, f"acceptance.yaml has no settings for {name}.yaml's probe {probe}"


def test_acceptance_has_the_topology_and_kubeprism_checks():
    acceptance = loaded(builtin_scenarios()["acceptance"])
    metrics = {c.metric for c in acceptance.checks}
    assert {"topology.control_planes", "topology.control_plane_fault_tolerance", "topology.control_planes_even",
            "topology.control_plane_untainted", "topology.control_plane_workloads", "kubeprism.answered"} <= metrics
    assert len({c.name for c in acceptance.checks}) == len(acceptance.checks)
