"""The node probe, agent side: real counters, a real CPU-burning child, a real agent."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.node.probe import CLEANUP_NAME, COLUMNS, JOURNAL_PREFIX, PROBE, read_journal
from tests.agents.helpers import AUTH

NODE = PROBE.jobs[0]
BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def context(data_dir: Path, cleanups: Cleanups | None = None, run_id: str = "run-1") -> ProbeContext:
    return ProbeContext("n1", run_id, data_dir, "127.0.0.1", 1, cleanups or Cleanups())


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"mode": "forever"}, "mode"),
        ({"duration": 0}, "duration"),
        ({"interval": 5, "duration": 1}, "interval"),
        ({"max_duration": 10**6}, "max_duration"),
        ({"etcd_dir": "x"}, "etcd_dir"),
        ({"x": 1}, "'x'"),
        ({"interval": True}, "interval"),
    ],
)
def test_bad_params_are_refused(raw: dict, field: str) -> None:
    with pytest.raises(ProbeParamError, match=field):
        NODE.parse(raw)


def test_start_and_collect_need_no_window_and_defaults_are_the_scenarios() -> None:
    assert NODE.parse({"mode": "start", "interval": 5, "duration": 1}).interval == 5
    defaults = NODE.parse({})
    assert (defaults.mode, defaults.duration, defaults.interval, defaults.max_duration) == ("window", 10.0, 1.0, 7200.0)
    assert PROBE.name == "node" and [job.name for job in PROBE.jobs] == ["node"] and PROBE.capabilities == ()


def journals(data_dir: Path) -> list[str]:
    return [p.name for p in data_dir.iterdir() if p.name.startswith(JOURNAL_PREFIX)]


@pytest.mark.processes
async def test_window_samples_counters_and_counts_its_own_children(tmp_path: Path) -> None:
    probe = NODE
    params = probe.parse({"duration": 2.0, "interval": 0.5, "etcd_dir": ""})
    # a child of this process (the agent's own tree) that keeps one CPU busy through the window
    burner = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=3.0)])
    try:
        result = await probe.run(params, context(tmp_path))
    finally:
        burner.kill()
        burner.wait(timeout=10)
    columns = result["sampling"]["columns"]
    assert set(columns) == set(COLUMNS)
    n = len(columns["t"])
    assert n >= 4 and all(len(v) == n for v in columns.values())
    for name in ("t", "cpu_busy_s", "cpu_total_s"):
        assert columns[name] == sorted(columns[name]), f"{name} is a counter"
    seconds = columns["t"][-1] - columns["t"][0]
    assert 1.8 <= seconds <= 4.0
    own = columns["own_cpu_s"][-1] - columns["own_cpu_s"][0]
    busy = columns["cpu_busy_s"][-1] - columns["cpu_busy_s"][0]
    # the child spins all the time; on a shared machine it still gets a good share of a core
    assert own >= 0.2 * seconds, f"the busy child used {own:.2f}s CPU in {seconds:.2f}s"
    assert busy >= own * 0.9
    assert result["facts"]["cpus"] >= 1 and result["facts"]["etcd_filesystem"]["seen_as"] == "data_dir"


@pytest.mark.processes
async def test_start_then_collect_spans_the_time_between(tmp_path: Path) -> None:
    probe = NODE
    cleanups = Cleanups()
    ctx = context(tmp_path, cleanups)
    started = await probe.run(probe.parse({"mode": "start", "interval": 0.2}), ctx)
    assert started["mode"] == "start"
    assert cleanups.names("run-1") == (CLEANUP_NAME,)
    assert len(journals(tmp_path)) == 1, "the sampler journals into the data directory"
    with pytest.raises(ProbeParamError):
        await probe.run(probe.parse({"mode": "start"}), ctx)
    await asyncio.sleep(1.2)
    result = await probe.run(probe.parse({"mode": "collect", "etcd_dir": ""}), ctx)
    t = result["sampling"]["columns"]["t"]
    assert len(t) >= 5 and t[-1] - t[0] >= 1.1
    assert set(result["sampling"]["columns"]) == set(COLUMNS) and result["sampling"]["interval_s"] == 0.2
    assert all(len(column) == len(t) for column in result["sampling"]["columns"].values())
    assert cleanups.names("run-1") == ()
    assert journals(tmp_path) == []
    with pytest.raises(ProbeParamError):
        await probe.run(probe.parse({"mode": "collect"}), ctx)


async def test_releasing_the_run_stops_a_sampler_never_collected(start_agent) -> None:
    probe = NODE
    agent = await start_agent({"node": probe})
    job = await agent.wait((await agent.submit("node", {"mode": "start", "interval": 0.2}, run_id="r-rel"))["id"])
    assert job["state"] == "done"
    response = await agent.client.delete("/v1/runs/r-rel", headers=AUTH)
    assert response.status == 200
    assert CLEANUP_NAME in (await response.json())["released"]
    assert journals(agent.config.data_dir) == []
    job = await agent.wait((await agent.submit("node", {"mode": "collect"}, run_id="r-rel"))["id"])
    assert job["state"] == "failed" and "no node sampling" in job["error"]


@pytest.mark.processes
async def test_agents_in_one_process_keep_their_samplers_apart(start_agent) -> None:
    # the job table is shared (one declaration per process); each agent's sampler is its own
    a, b = await start_agent(node="a"), await start_agent(node="b")
    for agent in (a, b):
        job = await agent.wait((await agent.submit("node", {"mode": "start", "interval": 0.2}, run_id="same"))["id"])
        assert job["state"] == "done", job["error"]
    await asyncio.sleep(0.5)
    collected = [
        await agent.wait((await agent.submit("node", {"mode": "collect", "etcd_dir": ""}, run_id="same"))["id"])
        for agent in (a, b)
    ]
    assert all(job["state"] == "done" and job["result"]["mode"] == "span" for job in collected), collected
    assert journals(a.config.data_dir) == journals(b.config.data_dir) == []


@pytest.mark.processes
async def test_sampler_stops_by_itself_after_max_duration(tmp_path: Path) -> None:
    probe = NODE
    ctx = context(tmp_path)
    await probe.run(probe.parse({"mode": "start", "interval": 0.2, "max_duration": 1}), ctx)
    await asyncio.sleep(2.0)
    result = await probe.run(probe.parse({"mode": "collect", "etcd_dir": ""}), ctx)
    t = result["sampling"]["columns"]["t"]
    # samples at 0, 0.2 .. 1.0 and the last one at collect: no sampling between 1 s and 2 s
    assert max(b - a for a, b in itertools.pairwise(t)) >= 0.8
    assert len(t) <= 9


def test_an_unfinished_journal_is_an_error_not_fewer_samples(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_text('{"interval_s": 1.0}\n[1, 2, 3, 4, 5, 6]\n')
    with pytest.raises(RuntimeError, match="incomplete"):
        read_journal(journal)
    journal.write_text('{"interval_s": 1.0}\n[1, 2, 3, 4, 5, 6]\n[2, 3, 4, 5, 6, 7]\n{"missed": 1}\n')
    assert read_journal(journal) == {
        "interval_s": 1.0,
        "missed": 1,
        "columns": {name: [float(i + 1), float(i + 2)] for i, name in enumerate(COLUMNS)},
    }
