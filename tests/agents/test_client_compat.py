"""The coordinator's AgentClient against a real agent: the two sides of agents/wire.py agree."""

from __future__ import annotations

import aiohttp
import pytest

from talbench.bench.agent_client import AgentClient
from tests.agents.helpers import TOKEN, dead_udp_port

pytestmark = pytest.mark.processes


async def test_agent_client_runs_an_rtt_job_and_releases_the_run(start_agent):
    a = await start_agent(node="cp1")
    b = await start_agent(node="cp2")
    async with aiohttp.ClientSession() as session:
        client = AgentClient("cp1", session, f"http://127.0.0.1:{a.port}", TOKEN)
        assert (await client.health())["node"] == "cp1"
        assert (await client.facts())["facts"]["cpus"] >= 1
        params = {
            "peers": [
                {"name": "cp2", "host": "127.0.0.1", "port": b.port},
                {"name": "gone", "host": "127.0.0.1", "port": dead_udp_port()},
            ],
            "count": 20,
            "warmup": 2,
            "interval": 0.002,
            "timeout": 0.2,
            "stagger": 0.02,
        }
        outcome = await client.run_job("rtt", params, "run-7", deadline=10, poll_interval=0.05)
        assert outcome.ok, outcome.error
        assert outcome.result["peers"]["cp2"]["received"] == 20
        assert outcome.result["peers"]["gone"]["received"] == 0
        assert outcome.resources["cpus"] >= 1 and outcome.started <= outcome.ended
        refused = await client.run_job("rtt", {"peers": []}, "run-7", deadline=5)
        assert not refused.ok and "HTTP 400" in refused.error and "peers" in refused.error
        assert await client.release_run("run-7") == []
        wrong = AgentClient("cp1", session, f"http://127.0.0.1:{a.port}", "nope")
        denied = await wrong.run_job("rtt", params, "run-7", deadline=5)
        assert not denied.ok and "401" in denied.error
