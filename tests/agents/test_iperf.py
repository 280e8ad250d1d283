"""The wireguard probe's iperf3 job: real iperf3 between two agents in two network namespaces."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError, ProbeUnavailable
from talbench.agents.probes.wireguard.iperf import IperfClient, IperfServer, _client_outcome, summarize_client
from talbench.agents.probes.wireguard.probe import IPERF_JOB, PROBE
from tests.agents.netns_agents import netns_agents, processes_named, require_root_tools

RUN = "iperf-test"


def test_the_job_is_declared_by_the_wireguard_probe() -> None:
    assert IPERF_JOB.name == "wireguard.iperf" and IPERF_JOB in PROBE.jobs
    assert {(t.binary, t.debian_package) for t in PROBE.tools} >= {("iperf3", "iperf3"), ("ip", "iproute2")}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"role": "both"}, "role"),
        ({"port": 5301, "duration": 1}, "role"),
        ({"role": "client", "host": "10.0.0.1", "port": 5301, "duration": 600}, "duration"),
        ({"role": "client", "host": "10.0.0.1", "port": 5301, "duration": "1s"}, "duration"),
        ({"role": "client", "host": "example.com", "port": 5301, "duration": 1}, "host"),
        ({"role": "client", "port": 5301}, "host"),
        ({"role": "client", "host": "10.0.0.1", "port": 5301, "streams": 17}, "streams"),
        ({"role": "client", "host": "10.0.0.1", "port": 5301, "omit": 11}, "omit"),
        ({"role": "client", "host": "10.0.0.1", "port": 5301, "accept_within": 5}, "accept_within"),
        ({"role": "server", "bind": "10.0.0.1", "port": 80, "duration": 1}, "port"),
        ({"role": "server", "bind": "10.0.0.1", "port": True}, "port"),
        ({"role": "server", "port": 5301}, "bind"),
        ({"role": "server", "bind": "10.0.0.1", "port": 5301, "accept_within": 121}, "accept_within"),
        ({"role": "server", "bind": "10.0.0.1", "port": 5301, "duration": 1, "extra": 1}, "extra"),
    ],
)
def test_params_are_bounded(params: dict[str, Any], needle: str) -> None:
    with pytest.raises(ProbeParamError, match=needle):
        IPERF_JOB.parse(params)


def test_params_take_the_scenario_names_and_defaults() -> None:
    server = IPERF_JOB.parse({"role": "server", "bind": "10.0.0.1", "port": 5301, "duration": 2})
    assert isinstance(server.root, IperfServer) and server.root.omit == 1 and server.root.accept_within == 20
    assert IPERF_JOB.time_limit(server) <= 60
    client = IPERF_JOB.parse(
        {"role": "client", "host": "fd00::0001", "port": 5301, "duration": 2, "streams": 2, "omit": 0}
    )
    assert isinstance(client.root, IperfClient) and client.root.host == "fd00::1" and client.root.bind is None
    assert IPERF_JOB.time_limit(client) == pytest.approx(10 + 2 + 0 + 25)


def test_iperf_error_report_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="unable to connect"):
        summarize_client({"error": "unable to connect to server"})


REFUSED_REPORT = """{
	"start":	{"connected":	[], "version":	"iperf 3.12"},
	"intervals":	[],
	"end":	{},
	"error":	"unable to connect to server: Connection refused"
}"""


def test_a_report_with_an_error_is_a_failure_whatever_the_exit_status() -> None:
    # iperf3 3.12 -J exits 0 when nobody listens, the error only in its report (this ended the
    # WireGuard benchmark's by-hand run with KeyError: 'sum_received').
    for failed in (False, True):
        report, message = _client_outcome(REFUSED_REPORT, failed)
        assert report is not None and message == "unable to connect to server: Connection refused"
    assert _client_outcome("iperf3: error - unable to connect to server: Connection refused", True)[1] == (
        "iperf3: error - unable to connect to server: Connection refused"
    )
    assert _client_outcome('{"end": {"sum_sent": {}, "sum_received": {}}}', False)[1] is None


async def test_missing_iperf3_is_unavailable_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing in it
    ctx = ProbeContext("n1", RUN, tmp_path, "127.0.0.1", 8946, Cleanups())
    params = IPERF_JOB.parse({"role": "client", "host": "127.0.0.1", "port": 5301, "duration": 1})
    with pytest.raises(ProbeUnavailable, match="apt-get install iperf3"):
        await IPERF_JOB.run(params, ctx)


@pytest.mark.root
async def test_throughput_between_two_agents(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        server = asyncio.create_task(
            env.clients["b"].run_job(
                IPERF_JOB.name,
                {"role": "server", "bind": env.address("b"), "port": 5301, "duration": 1, "accept_within": 10},
                RUN,
                deadline=30,
            )
        )
        client = await env.clients["a"].run_job(
            IPERF_JOB.name,
            {"role": "client", "host": env.address("b"), "port": 5301, "duration": 1, "connect_within": 10},
            RUN,
            deadline=30,
        )
        served = await server
        assert client.ok, client.error
        assert served.ok, served.error
        result, seen = client.result, served.result
        # A veth between namespaces carries far more than 100 Mbit/s; iperf3's two ends agree.
        assert result["received_bps"] > 100e6
        assert result["sent_bps"] >= result["received_bps"] * 0.9
        assert abs(seen["bytes_received"] - result["bytes_received"]) <= 0.05 * result["bytes_received"]
        assert isinstance(result["retransmits"], int)
        assert result["intervals_bps"] and all(v > 0 for v in result["intervals_bps"])
        # The transfer costs CPU on both sides, measured over the transfer only.
        assert result["cpu"]["busy_cores"] > 0 and 0.5 <= result["cpu"]["wall_s"] <= 5
        assert seen["cpu"]["busy_cores"] > 0 and seen["cpu"]["wall_s"] <= 5
        assert result["route"]["dev"] == "va"  # the plain path: the veth
        assert result["boot_id"] and result["boot_id"] == seen["boot_id"]  # one machine
        assert not processes_named("iperf3", "5301")


@pytest.mark.root
async def test_server_without_client_gives_up_and_leaves_nothing(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        started = time.monotonic()
        served = await env.clients["b"].run_job(
            IPERF_JOB.name,
            {"role": "server", "bind": env.address("b"), "port": 5302, "duration": 1, "accept_within": 1},
            RUN,
            deadline=30,
        )
        assert not served.ok and "no iperf3 client" in (served.error or "")
        assert time.monotonic() - started < 10
        assert not processes_named("iperf3", "5302")


@pytest.mark.root
async def test_releasing_the_run_kills_a_waiting_server(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        job = asyncio.create_task(
            env.clients["b"].run_job(
                IPERF_JOB.name,
                {"role": "server", "bind": env.address("b"), "port": 5303, "duration": 10, "accept_within": 60},
                RUN,
                deadline=90,
            )
        )
        give_up = time.monotonic() + 10
        while not processes_named("iperf3", "5303"):
            assert time.monotonic() < give_up, "iperf3 server never started"
            await asyncio.sleep(0.05)
        await env.clients["b"].release_run(RUN)
        outcome = await asyncio.wait_for(job, 15)
        assert not outcome.ok
        give_up = time.monotonic() + 5
        while processes_named("iperf3", "5303"):
            assert time.monotonic() < give_up, "iperf3 server still running after the run was released"
            await asyncio.sleep(0.05)


@pytest.mark.root
async def test_client_to_nobody_fails_in_bounded_time(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        started = time.monotonic()
        outcome = await env.clients["a"].run_job(
            IPERF_JOB.name,
            {"role": "client", "host": env.address("b"), "port": 5304, "duration": 1, "connect_within": 1},
            RUN,
            deadline=30,
        )
        assert not outcome.ok and "refused" in (outcome.error or "")
        assert time.monotonic() - started < 10


@pytest.mark.root
async def test_client_before_its_server_retries_until_it_listens(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        client = asyncio.create_task(
            env.clients["a"].run_job(
                IPERF_JOB.name,
                {"role": "client", "host": env.address("b"), "port": 5305, "duration": 1, "connect_within": 10},
                RUN,
                deadline=30,
            )
        )
        await asyncio.sleep(1.0)  # the client is refused a few times first
        served = await env.clients["b"].run_job(
            IPERF_JOB.name,
            {"role": "server", "bind": env.address("b"), "port": 5305, "duration": 1, "accept_within": 10},
            RUN,
            deadline=30,
        )
        sent = await client
        assert sent.ok, sent.error
        assert served.ok, served.error
        assert sent.result["connect_attempts"] > 1 and sent.result["received_bps"] > 0
