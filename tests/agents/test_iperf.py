"""iperf3 throughput probe: real iperf3 between two agents in two network namespaces."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError, ProbeUnavailable
from talbench.agents.probes.iperf import IperfProbe, parse_params, summarize_client
from tests.agents.netns_agents import netns_agents, processes_named, require_root_tools

RUN = "iperf-test"


def test_params_are_bounded() -> None:
    with pytest.raises(ProbeParamError, match="role"):
        parse_params({"role": "both"})
    with pytest.raises(ProbeParamError, match="duration_s"):
        parse_params({"role": "client", "host": "10.0.0.1", "port": 5301, "duration_s": 600})
    with pytest.raises(ProbeParamError, match="host"):
        parse_params({"role": "client", "host": "example.com", "port": 5301, "duration_s": 1})
    with pytest.raises(ProbeParamError, match="port"):
        parse_params({"role": "server", "bind": "10.0.0.1", "port": 80, "duration_s": 1})
    with pytest.raises(ProbeParamError, match="unknown"):
        parse_params({"role": "server", "bind": "10.0.0.1", "port": 5301, "duration_s": 1, "extra": 1})
    server = parse_params({"role": "server", "bind": "10.0.0.1", "port": 5301, "duration_s": 2})
    assert IperfProbe().time_limit(server) <= 60


def test_iperf_error_report_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="unable to connect"):
        summarize_client({"error": "unable to connect to server"})


async def test_missing_iperf3_is_unavailable_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing in it
    probe = IperfProbe()
    ctx = ProbeContext("n1", RUN, tmp_path, "127.0.0.1", 8946, Cleanups())
    params = probe.parse({"role": "client", "host": "127.0.0.1", "port": 5301, "duration_s": 1})
    with pytest.raises(ProbeUnavailable, match="apt-get install iperf3"):
        await probe.run(params, ctx)


@pytest.mark.root
async def test_throughput_between_two_agents(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        server = asyncio.create_task(env.clients["b"].run_job(
            "iperf", {"role": "server", "bind": env.address("b"), "port": 5301, "duration_s": 1, "accept_within_s": 10}, RUN, deadline=30))
        client = await env.clients["a"].run_job(
            "iperf", {"role": "client", "host": env.address("b"), "port": 5301, "duration_s": 1, "connect_within_s": 10}, RUN, deadline=30)
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
            "iperf", {"role": "server", "bind": env.address("b"), "port": 5302, "duration_s": 1, "accept_within_s": 1}, RUN, deadline=30)
        assert not served.ok and "no iperf3 client" in (served.error or "")
        assert time.monotonic() - started < 10
        assert not processes_named("iperf3", "5302")


@pytest.mark.root
async def test_releasing_the_run_kills_a_waiting_server(tmp_path: Path) -> None:
    require_root_tools("iperf3")
    async with netns_agents(tmp_path) as env:
        job = asyncio.create_task(env.clients["b"].run_job(
            "iperf", {"role": "server", "bind": env.address("b"), "port": 5303, "duration_s": 10, "accept_within_s": 60}, RUN, deadline=90))
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
            "iperf", {"role": "client", "host": env.address("b"), "port": 5304, "duration_s": 1, "connect_within_s": 1}, RUN, deadline=30)
        assert not outcome.ok and "refused" in (outcome.error or "")
        assert time.monotonic() - started < 10
