"""node driver and metrics: sizing by cluster size, utilisation from counters, the driver (window
and spanning) against real agents on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import psutil
import pytest

from talbench.agents.probes.node.probe import PROBE
from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.judge import judge_subject
from talbench.bench.metric import NullProgress
from talbench.bench.model import Check, Measurement, Node, ResultKey, Role, Scope, Status, Subject
from talbench.bench.probes.node.driver import NodeDriver, deadline, job_params, utilisation
from talbench.bench.run import metrics_of
from talbench.bench.units import parse_quantity
from tests.agents.conftest import start_agent  # noqa: F401 - real agents on 127.0.0.1
from tests.agents.helpers import TOKEN

METRICS = metrics_of({"node": NodeDriver()})
NODE = PROBE.jobs[0]


def parse_settings(raw: Mapping[str, Any], *, quick: bool) -> Any:
    return NodeDriver().settings(raw, quick=quick)


GB = 1e9


def cluster(workers: int) -> tuple[Node, ...]:
    return tuple(
        [Node(f"cp{i}", Role.CONTROL_PLANE, "10.0.0.1") for i in (1, 2, 3)]
        + [Node(f"w{i}", Role.WORKER, "10.0.0.2") for i in range(workers)]
    )


def facts(cpus: int, memory: float, disk: float) -> Measurement:
    data = {
        "facts": {
            "cpus": cpus,
            "memory_bytes": memory,
            "cpu_model": "Test CPU",
            "etcd_filesystem": {"path": "/var/lib/etcd", "size_bytes": disk},
        }
    }
    return Measurement(ResultKey("node", "cp1"), True, data=data)


def check(metric: str, *, warn: Any = None, fail: Any = None) -> Check:
    dimension = METRICS[metric].dimension
    return Check(
        metric,
        metric,
        Scope.CONTROL_PLANE_NODES,
        None if warn is None else parse_quantity(warn, dimension),
        None if fail is None else parse_quantity(fail, dimension),
        "test",
    )


def verdict(metric: str, measurement: Measurement, nodes: tuple[Node, ...], **limits: Any):
    return judge_subject(
        check(metric, **limits), METRICS[metric], Subject(("cp1",)), {ResultKey("node", "cp1"): measurement}, nodes
    )


@pytest.mark.parametrize(
    ("workers", "cpus", "memory", "status", "needs"),
    [
        (3, 4, 8.2 * GB, Status.PASS, "needs 4 cores (3 workers < 100)"),
        (3, 2, 8.2 * GB, Status.FAIL, "needs 4 cores"),
        (99, 4, 8.2 * GB, Status.PASS, "99 workers < 100"),
        (100, 4, 8.2 * GB, Status.FAIL, "needs 8 cores (100 workers >= 100)"),
        (150, 8, 33 * GB, Status.PASS, "150 workers >= 100"),
    ],
)
def test_cores_required_depend_on_the_number_of_workers(
    workers: int, cpus: int, memory: float, status: Status, needs: str
) -> None:
    v = verdict("node.cpu_cores_ratio", facts(cpus, memory, 100 * GB), cluster(workers), fail="100 %")
    assert v.status is status
    assert needs in v.detail and f"{cpus} cores" in v.detail


def test_memory_and_disk_ratios() -> None:
    small = cluster(3)
    assert verdict("node.memory_ratio", facts(4, 7.5 * GB, 100 * GB), small, fail="100 %").status is Status.FAIL
    ok = verdict("node.memory_ratio", facts(4, 8.3 * GB, 100 * GB), small, fail="100 %")
    assert ok.status is Status.PASS and "needs 8 GB" in ok.detail
    large = verdict("node.memory_ratio", facts(8, 16 * GB, 100 * GB), cluster(120), fail="100 %")
    assert large.status is Status.FAIL and large.observed == pytest.approx(0.5)
    disk = verdict("node.disk_ratio", facts(4, 8.3 * GB, 20 * GB), small, fail="100 %")
    assert disk.status is Status.FAIL and disk.observed == pytest.approx(0.5) and "/var/lib/etcd" in disk.detail


def test_missing_facts_are_invalid_not_passed() -> None:
    empty = Measurement(ResultKey("node", "cp1"), True, data={"facts": {}})
    assert verdict("node.cpu_cores_ratio", empty, cluster(3), fail="100 %").status is Status.INVALID


def columns(busy: list[float], total: list[float], own: list[float], used: list[float], rss: list[float]) -> dict:
    return {
        "interval_s": 1.0,
        "columns": {
            "t": [float(i) for i in range(len(busy))],
            "cpu_busy_s": busy,
            "cpu_total_s": total,
            "own_cpu_s": own,
            "mem_used_bytes": used,
            "own_rss_bytes": rss,
        },
    }


def test_utilisation_is_the_whole_span_with_talbench_excluded() -> None:
    # 4 CPUs for 4 s: 16 CPU-seconds; busy 10 of which talbench used 2: node load 8/16
    sampling = columns(
        busy=[0, 1, 2, 8, 10],
        total=[0, 4, 8, 12, 16],
        own=[0, 0, 0, 2, 2],
        used=[40, 40, 70, 50, 45],
        rss=[5, 5, 5, 5, 5],
    )
    found = utilisation({**sampling, "memory_total_bytes": 100})
    assert found.cpu_mean == pytest.approx(0.5)
    assert found.cpu_own_mean == pytest.approx(2 / 16)
    assert found.cpu_peak == pytest.approx(1.0)  # interval 2->3: 6 busy, 2 own, 4 capacity
    assert found.memory_peak == pytest.approx(0.65)
    data = {"facts": {"memory_bytes": 100}, "sampling": sampling}
    m = Measurement(ResultKey("node", "cp1"), True, data=data)
    cpu = verdict("node.cpu_utilisation", m, cluster(3), warn="60 %")
    assert cpu.status is Status.PASS and cpu.observed == pytest.approx(0.5) and "excluded" in cpu.detail
    memory = verdict("node.memory_utilisation", m, cluster(3), warn="60 %")
    assert memory.status is Status.WARN and memory.observed == pytest.approx(0.65)


def test_one_sample_is_invalid() -> None:
    data = {"facts": {"memory_bytes": 100}, "sampling": columns([0], [0], [0], [1], [1])}
    m = Measurement(ResultKey("node", "cp1"), True, data=data)
    assert verdict("node.cpu_utilisation", m, cluster(3), warn="60 %").status is Status.INVALID


def test_settings() -> None:
    quick = parse_settings({}, quick=True)
    assert quick.duration <= 3 and quick.interval <= 0.5
    assert parse_settings({"duration": "30s", "interval": "2s"}, quick=False).duration == 30
    assert parse_settings({"duration": 5}, quick=False).duration == 5.0  # plain numbers are seconds
    assert parse_settings({}, quick=False).max_duration == 7200.0
    for bad, field in (
        ({"duration": "5"}, "duration"),
        ({"interval": "1ms"}, "interval"),
        ({"what": 1}, "what"),
        ({"duration": "1s", "interval": "1s"}, "duration"),
        ({"max_duration": "7h"}, "max_duration"),
        ({"etcd_dir": "etcd"}, "etcd_dir"),
    ):
        with pytest.raises(ScenarioError, match=field):
            parse_settings(bad, quick=False)


def test_every_job_sent_is_one_the_agent_takes() -> None:
    settings = parse_settings({"interval": "200ms", "etcd_dir": ""}, quick=False)
    for mode in ("window", "start", "collect"):
        sent = job_params(settings, mode)
        assert sent["mode"] == mode and sent["interval"] == 0.2 and sent["etcd_dir"] == ""
        assert deadline(settings, mode) > NODE.time_limit(NODE.parse(sent))


@contextlib.asynccontextmanager
async def local_fleet(agents: Mapping[str, Any], nodes: tuple[Node, ...], run_id: str) -> AsyncIterator[Fleet]:
    async with aiohttp.ClientSession() as session:
        clients = {
            name: AgentClient(name, session, f"http://127.0.0.1:{agent.port}", TOKEN) for name, agent in agents.items()
        }
        yield Fleet(run_id, nodes, clients)


NODES = (Node("cp1", Role.CONTROL_PLANE, "127.0.0.1"), Node("w1", Role.WORKER, "127.0.0.1"))
KEYS = frozenset(ResultKey("node", n.name) for n in NODES)


@pytest.mark.processes
async def test_window_from_real_agents_gives_sizing_and_utilisation(start_agent) -> None:  # noqa: F811
    agents = {n.name: await start_agent({"node": NODE}, node=n.name) for n in NODES}
    settings = parse_settings({"duration": "2s", "interval": "500ms", "etcd_dir": ""}, quick=False)
    async with local_fleet(agents, NODES, "run-node") as fleet:
        measured = await NodeDriver().run(KEYS, fleet, settings, NullProgress())
    results = {m.key: m for m in measured}
    assert set(results) == KEYS and all(m.ok for m in measured)
    cores = verdict("node.cpu_cores_ratio", results[ResultKey("node", "cp1")], NODES, fail="100 %")
    assert cores.observed == pytest.approx(os.cpu_count() / 4)
    memory = verdict("node.memory_ratio", results[ResultKey("node", "cp1")], NODES, fail="100 %")
    assert memory.observed == pytest.approx(psutil.virtual_memory().total / 8e9)
    cpu = verdict("node.cpu_utilisation", results[ResultKey("node", "cp1")], NODES, warn="60 %")
    assert cpu.status in (Status.PASS, Status.WARN) and 0 <= cpu.observed <= 1


@pytest.mark.processes
async def test_spanning_samples_while_the_body_runs(start_agent) -> None:  # noqa: F811
    agents = {n.name: await start_agent({"node": NODE}, node=n.name) for n in NODES}
    settings = parse_settings({"interval": "200ms", "etcd_dir": ""}, quick=False)
    async with local_fleet(agents, NODES, "run-span") as fleet:
        async with NodeDriver().spanning(KEYS, fleet, settings, NullProgress()) as span:
            burner = detached_burner(1.5)
            try:
                await asyncio.sleep(1.6)
            finally:
                with contextlib.suppress(psutil.Error):
                    burner.kill()
    results = {m.key: m for m in span.measurements}
    assert set(results) == KEYS and all(m.ok for m in results.values()), [m.error for m in results.values()]
    sampling = results[ResultKey("node", "cp1")].data["sampling"]
    t = sampling["columns"]["t"]
    assert t[-1] - t[0] >= 1.5 and len(t) >= 6
    found = utilisation({**sampling, "memory_total_bytes": psutil.virtual_memory().total})
    cpus = os.cpu_count() or 1
    # the burner kept a CPU busy for most of the span and, outside the agent's process tree, it
    # counts as the node's load, not as talbench's own
    assert found.cpu_mean >= 0.2 / cpus
    assert found.cpu_mean - found.cpu_own_mean >= 0.2 / cpus  # the burner is outside talbench's own share


def detached_burner(seconds: float) -> psutil.Process:
    """A CPU-burning process outside this process's tree (its parent shell exits at once)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    shell = subprocess.run(
        ["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable, code],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    burner = psutil.Process(int(shell.stdout.strip()))
    assert burner.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    return burner
