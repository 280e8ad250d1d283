"""The ``etcd.member`` job against real etcd processes on 127.0.0.1: members form one cluster,
live in the node's data directory named by run id, and leave nothing behind (process, data)
when released, when a start fails, and when the agent releases the run."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psutil
import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError, ProbeUnavailable, Tool
from talbench.agents.probes.etcd import admin
from talbench.agents.probes.etcd.binary import ETCD_VERSION, binary_version, parse_version
from talbench.agents.probes.etcd.local_cluster import free_ports, local_cluster
from talbench.agents.probes.etcd.member import MeasurePeers, StartMember, StopMember, cleanup_name, member_dir
from talbench.agents.probes.etcd.probe import MEMBER, PROBE
from talbench.agents.wire import valid_run_id
from tests.agents.conftest import start_agent  # noqa: F401 - real agents on 127.0.0.1
from tests.agents.helpers import AUTH

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make etcd)")


def start_params(name: str = "m1", client: int = 40001, peer: int = 40002, **extra) -> dict:
    return {
        "action": "start",
        "name": name,
        "host": "127.0.0.1",
        "client_port": client,
        "peer_port": peer,
        "initial_cluster": {name: f"http://127.0.0.1:{peer}"},
        "cluster_token": "run-1",
        **extra,
    }


def etcd_processes_of(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "etcd" and str(root) in " ".join(proc.info["cmdline"] or ()):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


# ---- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"client_port": 2379}, "client_port 2379 is a port Talos"),
        ({"peer_port": 50000}, "peer_port 50000 is a port Talos"),
        ({"client_port": 6443}, "client_port 6443 is a port Talos"),
        ({"client_port": 80}, "client_port must be at least 1024"),
        ({"peer_port": 40001}, "client_port and peer_port must differ"),
        ({"initial_cluster": {"m2": "http://127.0.0.1:40002"}}, "initial_cluster must contain m1"),
        ({"initial_cluster": {"m1": "http://evil.example:40002"}}, r"initial_cluster\.m1: String should match pattern"),
        ({"initial_cluster": {}}, "initial_cluster"),
        ({"name": "../x"}, r"start\.name: String should match pattern"),
        ({"heartbeat_interval": 0.1, "election_timeout": 0.2}, "election_timeout .* at least 5x heartbeat_interval"),
        ({"heartbeat_interval": "100ms"}, "heartbeat_interval"),
        ({"host": "localhost"}, "host: value is not a valid IPv4 or IPv6 address"),
        ({"cluster_token": "a b"}, "cluster_token"),
        ({"cluster_token": "Run_1"}, "cluster_token"),
        ({"quota_bytes": 1024}, "quota_bytes must be at least"),
        ({"surprise": 1}, "unknown parameter 'start.surprise'"),
    ],
)
def test_bad_parameters_are_refused(changes: dict, words: str) -> None:
    with pytest.raises(ProbeParamError, match=words):
        MEMBER.parse({**start_params(), **changes})


def test_the_action_picks_the_parameters() -> None:
    start = MEMBER.parse(start_params(heartbeat_interval=0.05, election_timeout=0.5)).root
    assert isinstance(start, StartMember)
    assert (start.heartbeat_ms, start.election_ms, start.start_timeout) == (50, 500, 30.0)
    assert start.client_url == "http://127.0.0.1:40001" and start.peer_url == "http://127.0.0.1:40002"
    assert isinstance(MEMBER.parse({"action": "stop", "name": "m1"}).root, StopMember)
    peers = MEMBER.parse(
        {"action": "peers", "name": "m1", "peers": {"m2": "http://[::1]:40004"}, "interval": 0.01}
    ).root
    assert isinstance(peers, MeasurePeers) and (peers.count, peers.interval) == (20, 0.01)
    assert MEMBER.time_limit(MEMBER.parse({"action": "status", "name": "m1"})) > 0


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"action": "restart", "name": "m1"}, "action"),
        ({"name": "m1"}, "action"),
        ({"action": "stop"}, "stop.name is missing"),
        ({"action": "stop", "name": "m1", "host": "127.0.0.1"}, "unknown parameter 'stop.host'"),
        ({"action": "peers", "name": "m1", "peers": {}, "count": 0}, "peers.count must be at least 1"),
        ({"action": "peers", "name": "m1", "peers": {"m2": "https://10.0.0.2:2380"}}, r"peers\.peers\.m2"),
    ],
)
def test_every_action_is_checked_by_its_own_model(raw: dict, words: str) -> None:
    with pytest.raises(ProbeParamError, match=words):
        MEMBER.parse(raw)


def test_the_declaration_names_both_jobs_and_the_tools() -> None:
    assert [job.name for job in PROBE.jobs] == ["etcd.member", "etcd.load"]
    # built from etcd's Go modules at the version Talos ships (make etcd), not Debian's 3.4
    assert PROBE.tools == (
        Tool("etcd", built_by="etcd", version=ETCD_VERSION),
        Tool("etcdctl", built_by="etcd", version=ETCD_VERSION),
    )
    assert cleanup_name("m1") == "etcd.member/m1"


@pytest.mark.parametrize(
    "run_id, valid",
    [
        ("20261121-153000-a1b2", True),
        ("run-1", True),
        ("a" * 54, True),
        ("a" * 55, False),
        ("Run-1", False),
        ("run_1", False),
        ("run.1", False),
        ("-run", False),
        ("run-", False),
        ("", False),
        ("run-1\n", False),
        (7, False),
    ],
)
def test_run_ids_are_what_a_kubernetes_namespace_takes(run_id: object, valid: bool) -> None:
    assert valid_run_id(run_id) is valid


async def test_a_member_refuses_a_run_id_that_cannot_name_its_directory(tmp_path: Path) -> None:
    ctx = ProbeContext("n1", "Run_1", tmp_path, "127.0.0.1", 0, Cleanups())
    with pytest.raises(ProbeParamError, match="run id 'Run_1'"):
        await MEMBER.run(MEMBER.parse({"action": "status", "name": "m1"}), ctx)


def test_free_ports_avoid_talos_ports() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert not any(2379 <= p <= 2383 or p in (6443, 7445, 10250, 50000, 50001, 51820, 4789, 8472) for p in ports)


# ---- real members ------------------------------------------------------------------------------


@pytest.mark.processes
async def test_three_members_form_one_cluster_and_leave_nothing(tmp_path: Path) -> None:
    async with local_cluster(3, tmp_path, "run-form") as cluster:
        dirs = [member_dir(tmp_path, "run-form", name) for name in cluster.names]
        assert all((d / "data" / "member").is_dir() for d in dirs)
        statuses = await asyncio.to_thread(admin.wait_for_leader, list(cluster.client_urls), None, 10.0)
        assert len({s["leader"] for s in statuses}) == 1
        listed = await asyncio.to_thread(admin.members, cluster.client_urls[0])
        assert sorted(m["name"] for m in listed) == ["m1", "m2", "m3"]
        assert len({s["cluster_id"] for s in statuses}) == 1
        pids = [result["pid"] for result in cluster.start_results]
        assert len(etcd_processes_of(tmp_path)) == 3
        assert set(cluster.cleanups.names("run-form")) == {cleanup_name(n) for n in cluster.names}
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert not any(d.exists() for d in dirs)
    assert etcd_processes_of(tmp_path) == []


@pytest.mark.processes
async def test_peers_action_measures_round_trips_to_the_peer_listeners(tmp_path: Path) -> None:
    async with local_cluster(3, tmp_path, "run-peers") as cluster:
        probe = MEMBER
        ctx = ProbeContext("n1", "run-peers", tmp_path, "127.0.0.1", 0, cluster.cleanups)
        dead = free_ports(1)[0]
        peers = {"m2": cluster.peer_urls[1], "m3": cluster.peer_urls[2], "gone": f"http://127.0.0.1:{dead}"}
        result = await probe.run(
            probe.parse({"action": "peers", "name": "m1", "peers": peers, "count": 5, "interval": 0.01}), ctx
        )
    for name in ("m2", "m3"):
        measured = result["peers"][name]
        assert len(measured["samples_ns"]) == 5 and measured["failed"] == 0
        assert all(0 < ns < 100e6 for ns in measured["samples_ns"])
    assert result["peers"]["gone"]["samples_ns"] == [] and result["peers"]["gone"]["failed"] == 5


@pytest.mark.processes
async def test_a_member_whose_peers_never_come_fails_and_leaves_nothing(tmp_path: Path) -> None:
    probe = MEMBER
    cleanups = Cleanups()
    ctx = ProbeContext("n1", "run-lonely", tmp_path, "127.0.0.1", 0, cleanups)
    client, peer, other = free_ports(3)
    params = start_params(
        client=client,
        peer=peer,
        start_timeout=2.0,
        initial_cluster={
            "m1": f"http://127.0.0.1:{peer}",
            "m2": f"http://127.0.0.1:{other}",
            "m3": f"http://127.0.0.1:{other + 1}",
        },
    )
    with pytest.raises(TimeoutError, match="not serving"):
        await probe.run(probe.parse(params), ctx)
    assert cleanups.names("run-lonely") == ()
    assert not member_dir(tmp_path, "run-lonely", "m1").exists()
    assert etcd_processes_of(tmp_path) == []


@pytest.mark.processes
async def test_stop_releases_one_member_and_is_idempotent(tmp_path: Path) -> None:
    probe = MEMBER
    cleanups = Cleanups()
    ctx = ProbeContext("n1", "run-stop", tmp_path, "127.0.0.1", 0, cleanups)
    client, peer = free_ports(2)
    started = await probe.run(probe.parse(start_params(client=client, peer=peer, cluster_token="run-stop")), ctx)
    try:
        assert started["ready_after_s"] < 30 and started["client_url"] == f"http://127.0.0.1:{client}"
        # the version the running member reports on /version
        assert started["version"] == ETCD_VERSION and started["cluster_version"] == "3.6.0"
        assert (await probe.run(probe.parse({"action": "status", "name": "m1"}), ctx))["running"] is True
        with pytest.raises(ProbeParamError, match="already running"):
            await probe.run(probe.parse(start_params(client=client, peer=peer, cluster_token="run-stop")), ctx)
        stopped = await probe.run(probe.parse({"action": "stop", "name": "m1"}), ctx)
        assert stopped == {"name": "m1", "was_running": True, "data_removed": True}
        assert not psutil.pid_exists(started["pid"]) or psutil.Process(started["pid"]).status() == psutil.STATUS_ZOMBIE
        again = await probe.run(probe.parse({"action": "stop", "name": "m1"}), ctx)
        assert again["was_running"] is False and again["data_removed"] is True
    finally:
        await cleanups.release_all()
    assert etcd_processes_of(tmp_path) == []


async def test_a_missing_etcd_binary_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALBENCH_ETCD", str(tmp_path / "no-etcd"))
    probe = MEMBER
    cleanups = Cleanups()
    ctx = ProbeContext("n1", "run-x", tmp_path, "127.0.0.1", 0, cleanups)
    with pytest.raises(ProbeUnavailable, match="not an executable"):
        await probe.run(probe.parse(start_params()), ctx)
    assert cleanups.names("run-x") == ()


@pytest.mark.parametrize(
    "text, parsed",
    [("3.6.16", (3, 6, 16)), ("v3.5.21", (3, 5, 21)), ("3.6.0-rc.1", (3, 6, 0)), ("3.6", None), ("", None)],
)
def test_versions_are_parsed(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == parsed


def fake_etcd(tmp_path: Path, output: str) -> Path:
    script = tmp_path / "etcd"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    "output, words",
    [
        # Debian bookworm's etcd-server: one line naming the version found and `make etcd`
        ("etcd Version: 3.4.23", r"/etcd is etcd 3\.4\.23, older than the 3\.5 .*`make etcd` builds etcd 3\.6\.16"),
        ("something else", r"does not name an etcd version .*`make etcd`"),
    ],
)
@pytest.mark.processes
async def test_an_etcd_older_than_3_5_is_refused_with_the_version_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, words: str
) -> None:
    monkeypatch.setenv("TALBENCH_ETCD", str(fake_etcd(tmp_path, output)))
    cleanups = Cleanups()
    ctx = ProbeContext("n1", "run-old", tmp_path, "127.0.0.1", 0, cleanups)
    with pytest.raises(ProbeUnavailable, match=words) as refused:
        await MEMBER.run(MEMBER.parse(start_params()), ctx)
    assert "\n" not in str(refused.value)
    assert cleanups.names("run-old") == () and not member_dir(tmp_path, "run-old", "m1").exists()


@pytest.mark.processes
async def test_the_etcd_on_path_is_the_built_one() -> None:
    etcd = shutil.which("etcd")
    assert etcd is not None and await binary_version(etcd) == ETCD_VERSION, "make etcd installs it"


@pytest.mark.processes
async def test_the_agent_releases_a_member_when_the_run_is_deleted(start_agent) -> None:  # noqa: F811
    agent = await start_agent(node="cp1")
    client, peer = free_ports(2)
    job = await agent.submit(
        MEMBER.name, start_params(client=client, peer=peer, cluster_token="run-agent"), run_id="run-agent"
    )
    done = await agent.wait(job["id"], timeout=40)
    assert done["state"] == "done", done
    root = member_dir(agent.config.data_dir, "run-agent", "m1")
    assert root.is_dir() and len(etcd_processes_of(root)) == 1
    response = await agent.client.delete("/v1/runs/run-agent", headers=AUTH)
    assert response.status == 200
    assert cleanup_name("m1") in (await response.json())["released"]
    assert not root.exists()
    assert etcd_processes_of(root) == []
