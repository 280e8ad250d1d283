"""The storage scenario on a real lab (network namespaces, a real agent per node, real fio on each
node's data directory): every node gets fsync figures and device facts, control planes get
verdicts, nothing is left in any data directory.  Also the node sampler spanning other probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from talbench.agents.probes.fsync.probe import SCRATCH_PREFIX
from talbench.bench.dispatch.lab import lab_fleet
from talbench.bench.execute import execute
from talbench.bench.judge import judge
from talbench.bench.lab.state import LabState
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey, Status
from talbench.bench.plan import make_plan
from talbench.bench.probes.fsync.driver import FsyncDriver
from talbench.bench.probes.node.driver import NodeDriver
from talbench.bench.run import metrics_of
from talbench.bench.scenario import load

pytestmark = [pytest.mark.root("ip", "fio"), pytest.mark.lab]

SCENARIO = Path(__file__).parents[3] / "scenarios" / "storage.yaml"
DRIVERS = {"fsync": FsyncDriver(), "node": NodeDriver()}
METRICS = metrics_of(DRIVERS)


def scratch_left(state: LabState) -> list[str]:
    return [
        str(p)
        for node in state.nodes
        if node.data_dir.exists()
        for p in node.data_dir.iterdir()
        if p.name.startswith(SCRATCH_PREFIX)
    ]


async def test_storage_scenario_on_the_lab(lab: LabState) -> None:
    scenario = load(SCENARIO, METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=True))
    settings = {probe: DRIVERS[probe].settings(raw, quick=True) for probe, raw in scenario.probes.items()}
    nodes = lab.cluster_nodes()
    plan = make_plan(scenario.checks, nodes, METRICS)
    async with lab_fleet(lab, "lab-storage") as fleet:
        execution = await execute(plan, fleet, DRIVERS, settings, NullProgress())
    verdicts = judge(plan, execution.results, nodes, METRICS)
    control_planes = sorted(n.name for n in nodes if n.is_control_plane)
    fsync = {str(v.subject): v for v in verdicts if v.check == "control-plane-fsync"}
    assert sorted(fsync) == control_planes
    for _name, verdict in fsync.items():
        assert verdict.status in (Status.PASS, Status.WARN, Status.FAIL), verdict
        assert verdict.observed and verdict.observed > 0
    for node in nodes:
        measurement = execution.results[ResultKey("fsync", node.name)]
        assert measurement.ok, measurement.error
        assert measurement.data["complete"] and measurement.data["sync"]["lat"]["bins_ns"]
        assert measurement.data["device"]["disks"] and measurement.data["directory"] == str(
            lab.node(node.name).data_dir
        )
    assert {str(v.subject) for v in verdicts if v.check == "control-plane-nvme"} == set(control_planes)
    assert scratch_left(lab) == []


async def test_node_sampling_spans_the_fsync_runs(lab: LabState) -> None:
    nodes = lab.cluster_nodes()
    fsync_keys = frozenset(ResultKey("fsync", n.name) for n in nodes if n.is_control_plane)
    node_keys = frozenset(ResultKey("node", n.name) for n in nodes)
    fsync_settings = FsyncDriver().settings({"size": "1MiB"}, quick=True)
    node_settings = NodeDriver().settings({"interval": "500ms"}, quick=False)
    async with lab_fleet(lab, "lab-span") as fleet:
        async with NodeDriver().spanning(node_keys, fleet, node_settings, NullProgress()) as span:
            measured = await FsyncDriver().run(fsync_keys, fleet, fsync_settings, NullProgress())
    assert all(m.ok for m in measured)
    first_start = min(m.started for m in measured)
    last_end = max(m.ended for m in measured)
    results = {m.key: m for m in span.measurements}
    assert set(results) == node_keys
    for key, measurement in results.items():
        assert measurement.ok, measurement.error
        t = measurement.data["sampling"]["columns"]["t"]
        assert t[0] <= first_start and t[-1] >= last_end, f"{key}: sampling must cover the fsync runs"
    assert scratch_left(lab) == []
