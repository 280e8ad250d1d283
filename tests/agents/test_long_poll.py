"""Job polls are long polls: the agent holds ``GET /v1/jobs/{id}?wait=S`` until the job ends (or
S seconds), so a coordinator asks a few times per job instead of four times a second per agent
(through the API server's pod proxy, every ask is a request the control plane serves)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from talbench.bench.agent_client import AgentClient, RequestGate
from tests.agents.fake_probes import probes
from tests.agents.helpers import AUTH, TOKEN


async def test_a_poll_with_wait_answers_when_the_job_ends(start_agent):
    agent = await start_agent(probes())
    job = await agent.submit("sleep", {"seconds": 0.6})
    asked = time.monotonic()
    response = await agent.client.get(f"/v1/jobs/{job['id']}?wait=10", headers=AUTH)
    answer = (await response.json())["job"]
    assert response.status == 200 and answer["state"] == "done"
    assert 0.4 <= time.monotonic() - asked < 5  # held until the job ended, not for 10 s
    # a job that outlives the wait: answered "running" after the wait
    job = await agent.submit("sleep", {"seconds": 5})
    asked = time.monotonic()
    answer = (await (await agent.client.get(f"/v1/jobs/{job['id']}?wait=0.3", headers=AUTH)).json())["job"]
    assert answer["state"] == "running" and 0.25 <= time.monotonic() - asked < 3
    await agent.client.delete(f"/v1/jobs/{job['id']}", headers=AUTH)


async def test_a_bad_wait_is_a_400_naming_it(start_agent):
    agent = await start_agent(probes())
    job = await agent.submit("sleep", {"seconds": 0})
    for bad in ("soon", "-1", "31", "nan"):
        response = await agent.client.get(f"/v1/jobs/{job['id']}?wait={bad}", headers=AUTH)
        assert response.status == 400, bad
        assert "wait must be" in (await response.json())["error"]


async def test_the_coordinator_asks_a_few_times_per_job_not_four_times_a_second(start_agent):
    agent = await start_agent(probes())
    gets: list[str] = []

    async def count(session, context, params):  # aiohttp trace hook: every request sent
        if params.method == "GET":
            gets.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(count)
    base = str(agent.client.make_url("/")).rstrip("/")
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = AgentClient("n1", session, base, TOKEN)
        outcome = await client.run_job("sleep", {"seconds": 2.0}, "run-1", deadline=30)
    assert outcome.ok and outcome.result["slept"] == 2.0
    assert len(gets) <= 2, gets  # 2 s of job: 8 polls at 0.25 s before; one long poll now
    assert all("wait=" in url for url in gets)


async def test_a_crowded_fleet_keeps_its_requests_in_flight_within_the_gate(start_agent):
    """Six jobs at once through a gate of 4 slots (crowded beyond 2 jobs): never more than 4
    requests in flight, no request held for a long poll, and still a handful per job; all end."""
    agent = await start_agent(probes())
    in_flight = peak = 0
    gets: list[str] = []

    async def started(session, context, params):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if params.method == "GET":
            gets.append(str(params.url))

    async def ended(session, context, params):
        nonlocal in_flight
        in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    base = str(agent.client.make_url("/")).rstrip("/")
    gate = RequestGate(limit=4)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        clients = [AgentClient("n1", session, base, TOKEN, gate=gate) for _ in range(6)]
        outcomes = await asyncio.gather(
            *(client.run_job("sleep", {"seconds": 1.0}, "run-1", deadline=30) for client in clients)
        )
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    assert peak <= 4, peak
    assert gate.jobs == 0 and not gate.crowded
    long_polls = [url for url in gets if "wait=0.0" not in url]
    assert len(long_polls) <= 2, long_polls  # only while the fleet was not yet crowded
    assert len(gets) <= 6 * 4, gets
