"""The HTTP API as a coordinator sees it: auth, validation and error answers."""

from __future__ import annotations

import pytest

from aiohttp.test_utils import TestClient, TestServer

from tests.agents.helpers import AUTH, TOKEN, free_port
from talbench.agents.app import JOBS, AgentConfig, make_app

RTT_PARAMS = {"peers": [{"name": "a", "host": "127.0.0.1", "port": 9}], "count": 1, "interval": 0.01, "stagger": 0}

PROTECTED = [
    ("GET", "/v1/facts", None),
    ("POST", "/v1/jobs", {"schema": 1, "run_id": "r", "probe": "rtt", "params": RTT_PARAMS}),
    ("GET", "/v1/jobs/abc", None),
    ("DELETE", "/v1/jobs/abc", None),
    ("DELETE", "/v1/runs/r", None),
    ("GET", "/v1/nowhere", None),
]


async def test_health_needs_no_token(start_agent):
    agent = await start_agent(node="cp1")
    response = await agent.client.get("/v1/health")
    assert response.status == 200
    body = await response.json()
    assert body["schema"] == 1 and body["status"] == "ok" and body["node"] == "cp1" and body["api"] == "v1"
    assert body["version"]


@pytest.mark.parametrize("method,path,body", PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-Talbench-Token": "wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}],
    ids=["none", "wrong-bearer", "wrong-alt", "no-scheme", "empty"],
)
async def test_everything_else_needs_the_token(start_agent, method, path, body, headers):
    agent = await start_agent()
    response = await agent.client.request(method, path, json=body, headers=headers)
    assert response.status == 401
    payload = await response.json()
    assert payload["schema"] == 1 and payload["error"] and "\n" not in payload["error"]
    assert agent.app[JOBS].running() == []  # nothing was started


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {TOKEN}"}, {"X-Talbench-Token": TOKEN}, {"Authorization": "Bearer bad", "X-Talbench-Token": TOKEN}])
async def test_either_header_form_works(start_agent, headers):
    agent = await start_agent(node="w1")
    response = await agent.client.get("/v1/facts", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["node"] == "w1"
    facts = body["facts"]
    assert facts["cpus"] >= 1 and facts["kernel"] and facts["python"].startswith("3.") and facts["talbench"]


async def test_facts_come_from_the_callable_passed_in(tmp_path):
    port = free_port()
    config = AgentConfig(node="x", token=TOKEN, data_dir=tmp_path, listen_host="127.0.0.1", listen_port=port)
    app = make_app(config, {}, facts=lambda: {"disk": "nvme"})
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        response = await client.get("/v1/facts", headers=AUTH)
        assert (await response.json())["facts"] == {"disk": "nvme"}


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"schema": 2, "run_id": "r", "probe": "rtt", "params": RTT_PARAMS}, "schema"),
        ({"run_id": "r", "probe": "rtt", "params": RTT_PARAMS}, "schema"),
        ({"schema": 1, "run_id": "bad/id", "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "run_id": "x" * 65, "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "run_id": "x" * 55, "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "run_id": "Run-1", "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "run_id": "run-", "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "probe": "rtt", "params": RTT_PARAMS}, "run_id"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": {**RTT_PARAMS, "count": 0}}, "count"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": {**RTT_PARAMS, "interval": "fast"}}, "interval"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": {**RTT_PARAMS, "countt": 5}}, "countt"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": {"count": 5}}, "peers"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": [1]}, "params"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": RTT_PARAMS, "extra": 1}, "extra"),
        ({"schema": 1, "run_id": "r", "probe": "rtt", "params": {**RTT_PARAMS, "count": 100000, "interval": 10}}, "allows"),
        ([1, 2], "object"),
    ],
)
async def test_bad_job_requests_are_400_with_a_message(start_agent, body, needle):
    agent = await start_agent()
    response = await agent.client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert needle in error and "\n" not in error


async def test_body_that_is_not_json_is_400(start_agent):
    agent = await start_agent()
    response = await agent.client.post("/v1/jobs", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


async def test_unknown_probe_and_unknown_job_are_404(start_agent):
    agent = await start_agent()
    response = await agent.client.post("/v1/jobs", json={"schema": 1, "run_id": "r", "probe": "nope", "params": {}}, headers=AUTH)
    assert response.status == 404
    assert "nope" in (await response.json())["error"]
    for method in ("GET", "DELETE"):
        response = await agent.client.request(method, "/v1/jobs/0123abcd", headers=AUTH)
        assert response.status == 404
        assert (await response.json())["schema"] == 1
    response = await agent.client.get("/v1/nowhere", headers=AUTH)
    assert response.status == 404


async def test_bad_run_id_on_release_is_400(start_agent):
    agent = await start_agent()
    response = await agent.client.delete("/v1/runs/" + "x" * 65, headers=AUTH)
    assert response.status == 400
