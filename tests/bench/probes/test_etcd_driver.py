"""etcd driver and metrics: settings, the scenario checks (the snippet for control-plane.yaml),
and the driver against three real agents on 127.0.0.1 forming a real scratch etcd cluster:
verdicts from real results, nothing left behind, a member that cannot start is no_data."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from talbench.agents.probes.etcd.probe import MEMBER, PROBE
from talbench.agents.probes.registry import default_probes
from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.execute import execute
from talbench.bench.judge import judge, judge_subject
from talbench.bench.metric import NullProgress
from talbench.bench.model import Measurement, Node, ResultKey, Role, Status, Subject
from talbench.bench.plan import make_plan
from talbench.bench.probes.etcd.driver import DRIVER, EtcdDriver, load_params, member_ports, settings_record
from talbench.bench.probes.etcd.metrics import recommended_timing
from talbench.bench.run import metrics_of
from talbench.bench.scenario import parse
from tests.agents.conftest import start_agent  # noqa: F401 - real agents on 127.0.0.1
from tests.agents.helpers import TOKEN
from tests.bench.probes.etcd_snippet import SNIPPET

DRIVERS = {"etcd": EtcdDriver()}
METRICS = metrics_of(DRIVERS)
needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make etcd)")


def scenario(quick: bool = True, **overrides: Any):
    parsed = parse(SNIPPET, "snippet.yaml", METRICS, lambda probe, raw: DRIVERS[probe].settings(raw, quick=quick))
    return parsed, DRIVERS["etcd"].settings({**parsed.probes["etcd"], **overrides}, quick=quick)


def free_port_run(count: int) -> int:
    """A base port with ``count`` consecutive ports free on 127.0.0.1 (members on one host get
    consecutive ports)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65000:
            continue
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no run of free ports")


def etcd_leftovers(root: Path) -> list[str]:
    found = [str(p) for p in root.rglob("etcd-*") if p.is_dir()]
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if (
                proc.info["name"] == "etcd"
                and str(root) in " ".join(proc.info["cmdline"] or ())
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(f"process {proc.pid}")
        except psutil.NoSuchProcess:
            continue
    return found


@contextlib.asynccontextmanager
async def local_fleet(agents: Mapping[str, Any], nodes: tuple[Node, ...], run_id: str) -> AsyncIterator[Fleet]:
    async with aiohttp.ClientSession() as session:
        clients = {
            name: AgentClient(name, session, f"http://127.0.0.1:{agent.port}", TOKEN) for name, agent in agents.items()
        }
        try:
            yield Fleet(run_id, nodes, clients)
        finally:
            for client in clients.values():
                with contextlib.suppress(Exception):
                    await client.release_run(run_id)


CPS = tuple(Node(f"cp{i}", Role.CONTROL_PLANE, "127.0.0.1") for i in (1, 2, 3))


# ---- settings and checks ---------------------------------------------------------------------


def parse_settings(raw: dict, *, quick: bool):
    return DRIVER.settings(raw, quick=quick)


def test_the_driver_drives_the_agents_declaration() -> None:
    assert DRIVER.declaration is PROBE and DRIVER.settings_model is PROBE.settings and DRIVER.name == "etcd"


def test_profiles_and_quick() -> None:
    full = parse_settings({}, quick=False)
    assert (full.profile, full.rate, full.clients, full.duration, full.mode) == ("s", 150, 50, 60.0, "open")
    assert parse_settings({"profile": "m"}, quick=False).rate == 1000
    assert (
        parse_settings({"profile": "xl"}, quick=False).rate,
        parse_settings({"profile": "xl"}, quick=False).clients,
    ) == (15000, 1000)
    quick = parse_settings({"duration": "60s"}, quick=True)
    assert quick.quick and quick.duration == 10.0 and not full.quick
    assert parse_settings({"duration": "5s"}, quick=True).duration == 5.0
    assert settings_record(quick)["quick"] is True and settings_record(full)["heartbeat_ms"] == 100
    custom = parse_settings({"profile": "custom", "rate": "500/s", "clients": 80, "duration": "2s"}, quick=False)
    assert (custom.rate, custom.clients, custom.duration) == (500, 80, 2.0)


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"profile": "huge"}, "profile: must be 's', 'm', 'l', 'xl' or 'custom'"),
        ({"profile": "custom", "rate": 10}, "needs rate"),
        ({"rate": "fast"}, "rate: "),
        ({"rate": "0.5/s"}, "rate must be at least 1"),
        ({"duration": "60 parsecs"}, "duration: "),
        ({"duration": "1200s"}, "duration must be at most 600"),
        ({"mode": "fast"}, "mode: must be 'open' or 'ceiling'"),
        (
            {"heartbeat_interval": "500ms", "election_timeout": "1s"},
            "election_timeout .* at least 5x heartbeat_interval",
        ),
        ({"client_port": 5000, "peer_port": 5000}, "client_port and peer_port must differ"),
        ({"client_port": 2379}, "client_port 2379 is a port Talos"),
        ({"min_requests": 0}, "min_requests must be at least 1"),
        ({"load_node": ""}, "load_node"),
        ({"surprise": 1}, "unknown parameter 'surprise'"),
    ],
)
def test_bad_settings_are_scenario_errors(raw: dict, words: str) -> None:
    with pytest.raises(ScenarioError, match=words):
        parse_settings(raw, quick=False)


def test_members_sharing_an_address_get_distinct_ports_that_avoid_talos() -> None:
    settings = parse_settings({"client_port": 2371, "peer_port": 2372}, quick=False)
    ports = member_ports(CPS, settings)
    flat = [p for pair in ports.values() for p in pair]
    assert len(set(flat)) == 6 and not any(2379 <= p <= 2383 for p in flat)
    spread = tuple(Node(f"cp{i}", Role.CONTROL_PLANE, f"10.0.0.{i}") for i in (1, 2, 3))
    assert set(member_ports(spread, parse_settings({}, quick=False)).values()) == {(12379, 12380)}


def test_the_jobs_take_the_scenarios_fields() -> None:
    settings = parse_settings(
        {"profile": "m", "duration": "20s", "heartbeat_interval": "50ms", "election_timeout": "600ms"}, quick=False
    )
    load = load_params(settings, ["http://10.0.0.1:12379"])
    assert (load["rate"], load["clients"], load["duration"], load["start_timeout"]) == (1000, 200, 20.0, 30.0)
    assert not {"profile", "load_node", "min_requests", "client_port"} & set(load)
    assert DRIVER.declaration is not None
    LOAD = DRIVER.declaration.jobs[1]
    assert LOAD.parse(load).rate == 1000  # what the driver sends, the agent takes
    start = MEMBER.parse(
        {
            "action": "start",
            "name": "cp1",
            "host": "10.0.0.1",
            "client_port": 12379,
            "peer_port": 12380,
            "initial_cluster": {"cp1": "http://10.0.0.1:12380"},
            "cluster_token": "20261121-153000-a1b2",
            "heartbeat_interval": settings.heartbeat_interval,
            "election_timeout": settings.election_timeout,
        }
    )
    assert (start.root.heartbeat_ms, start.root.election_ms) == (50, 600)


def test_the_snippet_parses() -> None:
    parsed, settings = scenario(quick=False)
    assert settings.duration == 60 and settings.rate == 150
    assert {c.metric for c in parsed.checks} >= {
        "etcd.rate_ratio",
        "etcd.max_latency",
        "etcd.latency_stddev",
        "etcd.errors",
    }


@pytest.mark.parametrize(
    "rtt, heartbeat, election",
    # etcd's defaults stand on a LAN and well beyond; only an RTT above 100 ms asks for more
    [(0.0002, 0.1, 1.0), (0.0211, 0.1, 1.0), (0.1, 0.1, 1.0), (0.1004, 0.101, 1.01), (0.15, 0.150, 1.5)],
)
def test_recommended_timing_follows_the_tuning_guide(rtt: float, heartbeat: float, election: float) -> None:
    assert recommended_timing(rtt) == pytest.approx((heartbeat, election))


# ---- the driver against real agents ---------------------------------------------------------------


@pytest.mark.processes
@needs_etcd
async def test_scratch_cluster_across_three_control_planes(start_agent, tmp_path: Path) -> None:  # noqa: F811
    agents = {n.name: await start_agent(node=n.name) for n in CPS}
    base = free_port_run(6)
    parsed, settings = scenario(duration="3s", client_port=base, peer_port=base + 1)
    plan = make_plan(parsed.checks, CPS, METRICS)
    async with local_fleet(agents, CPS, "run-etcd") as fleet:
        execution = await execute(plan, fleet, DRIVERS, {"etcd": settings}, NullProgress())
        leftovers = etcd_leftovers(tmp_path)
    assert leftovers == []
    verdicts = {(v.check, str(v.subject)): v for v in judge(plan, execution.results, CPS, METRICS)}
    cluster = execution.results[ResultKey("etcd", "cluster")]
    assert cluster.ok, cluster.error
    load = cluster.data["result"]["load"]
    assert load["requests"]["planned"] == 450 and load["mode"] == "open"
    assert sorted(m["name"] for m in cluster.data["result"]["members"]) == ["cp1", "cp2", "cp3"]
    assert cluster.data["result"]["cleanup"]["remaining"] == 0
    assert all(t["ok"] and t["data_removed"] for t in cluster.data["teardown"].values())
    # the verdicts are real figures from the real result, judged
    rate = verdicts[("etcd-write-rate", "cluster")]
    if load["saturated"]:
        assert rate.status is Status.INVALID and "saturated" in rate.message
    else:
        assert rate.observed == pytest.approx(load["achieved_rate"] / 150)
        assert rate.status is (Status.PASS if rate.observed >= 0.9 else Status.FAIL)
    errors = verdicts[("etcd-write-errors", "cluster")]
    assert errors.observed == 0 and errors.status is Status.PASS
    for node in ("cp1", "cp2", "cp3"):
        fsync = verdicts[("etcd-wal-fsync", node)]
        assert fsync.status in (Status.PASS, Status.FAIL) and fsync.observed > 0, fsync
    heartbeat = verdicts[("etcd-recommended-heartbeat", "cluster")]
    rtt = verdicts[("etcd-member-rtt", "cluster")]
    assert heartbeat.status is Status.INFO and rtt.status is Status.INFO, (heartbeat, rtt)
    assert 0 < rtt.observed < 0.05 and heartbeat.observed == recommended_timing(rtt.observed)[0]
    pairs = cluster.data["peer_rtt"]
    assert sorted(pairs) == ["cp1", "cp2", "cp3"] and all(
        len(p["samples_ns"]) == 30 for peers in pairs.values() for p in peers.values()
    )
    assert "defaults (100 ms / 1000 ms) suffice for this RTT: keep them" in heartbeat.detail


@pytest.mark.processes
@needs_etcd
async def test_a_member_that_cannot_start_is_no_data_and_the_others_are_stopped(start_agent, tmp_path: Path) -> None:  # noqa: F811
    probes = default_probes()
    without_etcd = {name: probe for name, probe in probes.items() if name != MEMBER.name}
    agents = {
        "cp1": await start_agent(node="cp1"),
        "cp2": await start_agent(node="cp2"),
        "cp3": await start_agent(without_etcd, node="cp3"),
    }
    base = free_port_run(6)
    parsed, settings = scenario(duration="2s", client_port=base, peer_port=base + 1, start_timeout="5s")
    plan = make_plan(parsed.checks, CPS, METRICS)
    async with local_fleet(agents, CPS, "run-broken") as fleet:
        execution = await execute(plan, fleet, DRIVERS, {"etcd": settings}, NullProgress())
        leftovers = etcd_leftovers(tmp_path)
    assert leftovers == []
    verdicts = judge(plan, execution.results, CPS, METRICS)
    assert {v.status for v in verdicts} == {Status.NO_DATA}
    rate = next(v for v in verdicts if v.check == "etcd-write-rate")
    assert "cp3" in rate.message and "did not start" in rate.message


async def test_an_unready_control_plane_is_no_data_without_starting_anything(start_agent) -> None:  # noqa: F811
    agents = {"cp1": await start_agent(node="cp1"), "cp2": await start_agent(node="cp2")}
    async with aiohttp.ClientSession() as session:
        clients = {name: AgentClient(name, session, f"http://127.0.0.1:{a.port}", TOKEN) for name, a in agents.items()}
        fleet = Fleet("run-unready", CPS, clients, unready={"cp3": "agent never answered"})
        keys = frozenset({ResultKey("etcd", "cluster"), ResultKey("etcd", "cp1")})
        measured = await EtcdDriver().run(keys, fleet, parse_settings({}, quick=True), NullProgress())
    assert {m.key for m in measured} == keys and not any(m.ok for m in measured)
    assert all("cp3" in (m.error or "") for m in measured)


# ---- metrics on a real result, with what the judge must not trust -------------------------------


def _saturated(cluster: Measurement) -> Measurement:
    result = dict(cluster.data["result"])
    result["load"] = {**result["load"], "saturated": "a load-generator worker was busy 97 % of a core"}
    return Measurement(cluster.key, True, data={**cluster.data, "result": result})


@pytest.mark.processes
@needs_etcd
async def test_a_saturated_generator_is_invalid_not_failed(start_agent) -> None:  # noqa: F811
    nodes = (Node("cp1", Role.CONTROL_PLANE, "127.0.0.1"),)
    agents = {"cp1": await start_agent(node="cp1")}
    base = free_port_run(2)
    _, settings = scenario(duration="1s", client_port=base, peer_port=base + 1, min_requests=10)
    async with local_fleet(agents, nodes, "run-sat") as fleet:
        [cluster] = await EtcdDriver().run(frozenset({ResultKey("etcd", "cluster")}), fleet, settings, NullProgress())
    assert cluster.ok, cluster.error
    parsed, _ = scenario()
    checks = {c.name: c for c in parsed.checks}
    for name in ("etcd-write-rate", "etcd-slowest-write", "etcd-latency-stddev"):
        check = checks[name]
        good = judge_subject(check, METRICS[check.metric], Subject(()), {cluster.key: cluster}, nodes)
        assert good.status in (Status.PASS, Status.FAIL), good
        bad = judge_subject(check, METRICS[check.metric], Subject(()), {cluster.key: _saturated(cluster)}, nodes)
        assert bad.status is Status.INVALID and "busy 97 %" in bad.message
    # a single member has no peers: no RTT, said so rather than guessed
    rtt = judge_subject(checks["etcd-member-rtt"], METRICS["etcd.peer_rtt"], Subject(()), {cluster.key: cluster}, nodes)
    assert rtt.status is Status.INVALID and "a single member has no peers" in rtt.message
