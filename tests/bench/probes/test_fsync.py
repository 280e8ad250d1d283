"""fsync driver and metrics: settings, fio's percentile rule on real fio histograms, the judge's
view of real results, and the driver against real agents on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.params import wire
from talbench.agents.probe import ProbeContext
from talbench.agents.probes.fsync.probe import PROBE, SCRATCH_PREFIX, fsync_job
from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.execute import execute
from talbench.bench.judge import judge, judge_subject
from talbench.bench.metric import NullProgress
from talbench.bench.model import Measurement, Node, ResultKey, Role, Status, Subject
from talbench.bench.plan import make_plan
from talbench.bench.probes.fsync.driver import (
    MIN_SYNCS,
    FsyncDriver,
    deadline,
    histogram_percentile,
    merge_bins,
)
from talbench.bench.probes.node.driver import NodeDriver
from talbench.bench.run import metrics_of
from talbench.bench.scenario import load
from tests.agents.conftest import start_agent  # noqa: F401 - real agents on 127.0.0.1
from tests.agents.helpers import TOKEN

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio")

SCENARIO = Path(__file__).parents[3] / "scenarios" / "storage.yaml"
DRIVERS = {"fsync": FsyncDriver(), "node": NodeDriver()}
METRICS = metrics_of(DRIVERS)
SMALL = {"size": 256 * 1024, "reserve": 0, "time_limit": 30}  # agent params
SMALL_SETTINGS = {"size": "256KiB", "reserve": 0, "time_limit": "30s"}  # the same as scenario settings


def parse_settings(raw: Mapping[str, Any], *, quick: bool) -> Any:
    return FsyncDriver().settings(raw, quick=quick)


async def real_result(tmp_path: Path, **params: Any) -> dict[str, Any]:
    probe = PROBE.jobs[0]
    ctx = ProbeContext("n1", "run-1", tmp_path, "127.0.0.1", 1, Cleanups())
    return await probe.run(probe.parse({**SMALL, **params}), ctx)


def measured(data: Mapping[str, Any], node: str = "cp1") -> Measurement:
    return Measurement(ResultKey("fsync", node), True, data=data)


def storage_check(name: str):
    scenario = load(SCENARIO, METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=False))
    return next(c for c in scenario.checks if c.name == name)


CP = (Node("cp1", Role.CONTROL_PLANE, "127.0.0.1"),)


# ---- settings ------------------------------------------------------------------------------


def test_default_settings_are_the_etcd_recipe_and_quick_scales_down() -> None:
    full = parse_settings({}, quick=False)
    assert (full.size, full.block_size, full.parallel) == (22 << 20, 2300, 1)
    quick = parse_settings({}, quick=True)
    assert quick.size < full.size and quick.time_limit <= 60
    assert quick.size // quick.block_size >= MIN_SYNCS
    sent = wire(parse_settings({"size": "1MiB", "time_limit": "30s", "parallel": 2}, quick=False))
    assert sent == {
        "size": 1 << 20,
        "block_size": 2300,
        "time_limit": 30.0,
        "reserve": 256 << 20,
        "etcd_dir": "/var/lib/etcd",
    }
    assert PROBE.jobs[0].parse(sent).size == 1 << 20  # what the coordinator sends, the agent takes
    assert parse_settings({"time_limit": 30}, quick=False).time_limit == 30.0  # plain numbers are seconds
    assert deadline(full) > PROBE.jobs[0].time_limit(PROBE.jobs[0].parse(wire(full))) > full.time_limit


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"size": "22m"}, "size"),
        ({"size": 22}, "size"),
        ({"time_limit": "30"}, "time_limit"),
        ({"time_limit": "20m"}, "time_limit"),
        ({"parallel": 0}, "parallel"),
        ({"etcd_dir": "var"}, "etcd_dir"),
        ({"nope": 1}, "nope"),
        ({"size": "100KiB", "block_size": "64KiB"}, "block_size"),
        ({"size": "200KiB", "block_size": "4KiB"}, "block_size"),
    ],
)
def test_bad_settings_name_the_problem(raw: dict, field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        parse_settings(raw, quick=False)


def test_quick_settings_still_need_enough_fdatasyncs() -> None:
    assert parse_settings({"block_size": "32KiB"}, quick=False).size == 22 << 20  # 704 fdatasyncs
    with pytest.raises(ScenarioError, match="fewer than 100 fdatasyncs"):
        parse_settings({"block_size": "64KiB"}, quick=True)  # 4 MiB / 64 KiB: 64


def test_storage_scenario_loads_with_its_sources() -> None:
    scenario = load(SCENARIO, METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=False))
    names = {c.name: c for c in scenario.checks}
    assert names["control-plane-fsync"].fail.value == pytest.approx(0.010)
    assert names["control-plane-fsync"].warn.value == pytest.approx(0.005)
    assert names["control-plane-nvme"].warn is not None and names["control-plane-nvme"].fail is None
    assert all(c.source for c in scenario.checks)


# ---- figures from real fio histograms ------------------------------------------------------


@pytest.mark.processes
async def test_histogram_percentiles_equal_fios_own_table(tmp_path: Path) -> None:
    result = await real_result(tmp_path)
    for block in (result["sync"]["lat"], result["write"]["clat"]):
        assert block["percentiles_ns"], block
        for percent, value in block["percentiles_ns"].items():
            assert histogram_percentile(block["bins_ns"], float(percent)) == value, percent


@pytest.mark.processes
async def test_merged_histograms_count_every_sample(tmp_path: Path) -> None:
    a = (await real_result(tmp_path))["sync"]["lat"]
    b = (await real_result(tmp_path))["sync"]["lat"]
    merged = merge_bins([a["bins_ns"], b["bins_ns"]])
    assert sum(merged.values()) == a["count"] + b["count"]
    low, high = sorted([histogram_percentile(a["bins_ns"], 99), histogram_percentile(b["bins_ns"], 99)])
    assert low <= histogram_percentile(merged, 99) <= high


@pytest.mark.processes
async def test_p99_verdict_carries_the_measured_value(tmp_path: Path) -> None:
    result = await real_result(tmp_path)
    check = storage_check("control-plane-fsync")
    verdict = judge_subject(
        check, METRICS["fsync.p99"], Subject(("cp1",)), {ResultKey("fsync", "cp1"): measured(result)}, CP
    )
    assert verdict.observed == result["sync"]["lat"]["percentiles_ns"]["99"] / 1e9
    expected = Status.FAIL if verdict.observed >= 0.010 else Status.WARN if verdict.observed >= 0.005 else Status.PASS
    assert verdict.status is expected
    assert "fdatasyncs" in verdict.detail


@pytest.mark.processes
async def test_a_recipe_cut_short_by_its_time_limit_is_judged_on_the_writes_done(tmp_path: Path) -> None:
    """fio stops at its 1 s limit long before 1 GiB: the thousands of fdatasyncs it did are judged
    (a disk too slow to finish in time is a fail, not "not judged"), and the detail says it was cut
    short and after how many writes."""
    result = await real_result(tmp_path, size=1 << 30, time_limit=1)
    assert result["complete"] is False and result["sync"]["lat"]["count"] >= 100
    check = storage_check("control-plane-fsync")
    verdict = judge_subject(
        check, METRICS["fsync.p99"], Subject(("cp1",)), {ResultKey("fsync", "cp1"): measured(result)}, CP
    )
    assert verdict.status in (Status.PASS, Status.WARN, Status.FAIL), verdict.message
    assert verdict.observed == result["sync"]["lat"]["percentiles_ns"]["99"] / 1e9
    assert "cut short" in verdict.detail and "time limit after" in verdict.detail
    # fio killed past its limit leaves no figures: invalid, with the reason
    killed = {**result, "sync": None, "write": None, "stopped": "fio did not stop at its 1s runtime and was killed"}
    verdict = judge_subject(
        check, METRICS["fsync.p99"], Subject(("cp1",)), {ResultKey("fsync", "cp1"): measured(killed)}, CP
    )
    assert verdict.status is Status.INVALID and "was killed" in verdict.message


@pytest.mark.processes
async def test_too_few_syncs_is_invalid(tmp_path: Path) -> None:
    result = await real_result(tmp_path, size=64 * 1024, block_size=4096)  # 16 writes
    observation = METRICS["fsync.p99"].observe(Subject(("cp1",)), [measured(result)], CP)
    assert observation.invalid and "too few fdatasyncs" in observation.invalid


@pytest.mark.processes
async def test_etcd_on_another_disk_makes_the_figure_invalid(tmp_path: Path) -> None:
    result = await real_result(tmp_path)
    elsewhere = {
        **result,
        "etcd_same_disk": False,
        "etcd_device": {"path": "/var/lib/etcd", "disks": [{"name": "nvme1n1"}]},
    }
    observation = METRICS["fsync.p99"].observe(Subject(("cp1",)), [measured(elsewhere)], CP)
    assert observation.invalid and "nvme1n1" in observation.invalid and "/var/lib/etcd" in observation.invalid
    assert observation.value is not None  # the figure is still shown


def disk(name: str, media: str, *, nvme: bool = False, transport: str | None = None, rotational: bool = False) -> dict:
    return {"name": name, "media": media, "nvme": nvme, "transport": transport, "rotational": rotational, "model": None}


@pytest.mark.parametrize(
    ("disks", "value", "words"),
    [
        ([disk("nvme0n1", "nvme", nvme=True, transport="pcie")], 1.0, "nvme0n1"),
        ([disk("nvme1n1", "nvme", nvme=True, transport="tcp")], 0.0, "over tcp"),
        ([disk("vda", "virtual", rotational=True)], 0.0, "claims rotational"),
        ([disk("nvme0n1", "nvme", nvme=True), disk("sda", "hdd", rotational=True)], 0.0, "sda"),
        ([], 0.0, "cannot tell"),
    ],
)
def test_nvme_metric(disks: list, value: float, words: str) -> None:
    data = {"device": {"disks": disks, "note": "no block device", "filesystem": {}}}
    observation = METRICS["fsync.nvme"].observe(Subject(("cp1",)), [measured(data)], CP)
    assert observation.value == value and words in observation.detail
    check = storage_check("control-plane-nvme")
    verdict = judge_subject(
        check, METRICS["fsync.nvme"], Subject(("cp1",)), {ResultKey("fsync", "cp1"): measured(data)}, CP
    )
    assert verdict.status is (Status.PASS if value else Status.WARN)


# ---- the driver against real agents ----------------------------------------------------------


@contextlib.asynccontextmanager
async def local_fleet(agents: Mapping[str, Any], nodes: tuple[Node, ...], run_id: str) -> AsyncIterator[Fleet]:
    async with aiohttp.ClientSession() as session:
        clients = {
            name: AgentClient(name, session, f"http://127.0.0.1:{agent.port}", TOKEN) for name, agent in agents.items()
        }
        yield Fleet(run_id, nodes, clients)


@pytest.mark.processes
async def test_storage_checks_judged_from_real_agents(start_agent) -> None:  # noqa: F811
    nodes = (Node("cp1", Role.CONTROL_PLANE, "127.0.0.1"), Node("w1", Role.WORKER, "127.0.0.1"))
    agents = {n.name: await start_agent(node=n.name) for n in nodes}
    scenario = load(SCENARIO, METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=True))
    settings = {
        probe: DRIVERS[probe].settings({**raw, **({"reserve": 0} if probe == "fsync" else {})}, quick=True)
        for probe, raw in scenario.probes.items()
    }
    plan = make_plan(scenario.checks, nodes, METRICS)
    async with local_fleet(agents, nodes, "run-storage") as fleet:
        execution = await execute(plan, fleet, DRIVERS, settings, NullProgress())
    verdicts = {(v.check, str(v.subject)): v for v in judge(plan, execution.results, nodes, METRICS)}
    fsync = verdicts[("control-plane-fsync", "cp1")]
    assert fsync.status in (Status.PASS, Status.WARN, Status.FAIL), fsync
    data = execution.results[ResultKey("fsync", "cp1")].data
    assert fsync.observed == histogram_percentile(data["sync"]["lat"]["bins_ns"], 99) / 1e9
    assert data["sync"]["lat"]["count"] == settings["fsync"].size // settings["fsync"].block_size
    assert data["device"]["disks"]
    assert verdicts[("worker-fsync", "w1")].status is Status.INFO
    assert verdicts[("control-plane-nvme", "cp1")].status in (Status.PASS, Status.WARN)
    assert verdicts[("control-plane-disk-size", "cp1")].status in (Status.PASS, Status.FAIL)
    for agent in agents.values():
        assert not [p for p in agent.config.data_dir.iterdir() if p.name.startswith(SCRATCH_PREFIX)]


async def test_missing_fio_reaches_the_coordinator_as_unavailable(start_agent, tmp_path: Path) -> None:  # noqa: F811
    agent = await start_agent({"fsync": fsync_job(fio_binary=str(tmp_path / "no-fio"))}, node="cp1")
    async with local_fleet({"cp1": agent}, CP, "run-nofio") as fleet:
        [measurement] = await FsyncDriver().run(
            frozenset({ResultKey("fsync", "cp1")}), fleet, parse_settings(SMALL_SETTINGS, quick=True), NullProgress()
        )
    assert not measurement.ok
    assert measurement.error_kind == "unavailable"
    assert measurement.error == "fio not found: apt-get install fio"
    verdict = judge_subject(
        storage_check("control-plane-fsync"),
        METRICS["fsync.p99"],
        Subject(("cp1",)),
        {measurement.key: measurement},
        CP,
    )
    assert verdict.status is Status.NO_DATA and "apt-get install fio" in verdict.message


@pytest.mark.processes
async def test_a_full_disk_is_no_data_for_that_node_only(start_agent) -> None:  # noqa: F811
    nodes = (Node("cp1", Role.CONTROL_PLANE, "127.0.0.1"), Node("cp2", Role.CONTROL_PLANE, "127.0.0.1"))
    agents = {n.name: await start_agent(node=n.name) for n in nodes}
    driver = FsyncDriver()
    keys = frozenset(ResultKey("fsync", n.name) for n in nodes)
    async with local_fleet(agents, nodes, "run-full") as fleet:
        # cp2's agent is asked to keep more free space than any disk has: it refuses, cp1 runs
        ok = await driver.run(
            frozenset({ResultKey("fsync", "cp1")}), fleet, parse_settings(SMALL_SETTINGS, quick=True), NullProgress()
        )
        refused = await driver.run(
            frozenset({ResultKey("fsync", "cp2")}),
            fleet,
            parse_settings({**SMALL_SETTINGS, "reserve": "1000TiB"}, quick=True),
            NullProgress(),
        )
    results = {m.key: m for m in ok + refused}
    assert set(results) == keys
    assert results[ResultKey("fsync", "cp1")].ok
    bad = results[ResultKey("fsync", "cp2")]
    assert not bad.ok and "not enough free space" in bad.error and "Traceback" not in bad.error
    verdicts = {
        str(v.subject): v
        for v in (
            judge_subject(
                storage_check("control-plane-fsync"), METRICS["fsync.p99"], Subject((n.name,)), results, nodes
            )
            for n in nodes
        )
    }
    assert verdicts["cp2"].status is Status.NO_DATA and "not enough free space" in verdicts["cp2"].message
    assert verdicts["cp1"].status in (Status.PASS, Status.WARN, Status.FAIL)
