"""The HTTP API as a coordinator sees it: auth, validation and error answers."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from talbench.agents.app import JOBS, MAX_BODY_BYTES, AgentConfig, make_app
from talbench.agents.params import ParamError
from tests.agents.helpers import AUTH, TOKEN, StartAgent, free_port

RTT_PARAMS = {"peers": [{"name": "a", "host": "127.0.0.1", "port": 9}], "count": 1, "interval": 0.01, "stagger": 0}

PROTECTED = [
    ("GET", "/v1/facts", None),
    ("POST", "/v1/jobs", {"schema": 1, "run_id": "r", "probe": "rtt", "params": RTT_PARAMS}),
    ("GET", "/v1/jobs/abc", None),
    ("DELETE", "/v1/jobs/abc", None),
    ("DELETE", "/v1/runs/r", None),
    ("GET", "/v1/nowhere", None),
]


async def test_health_needs_no_token(start_agent: StartAgent) -> None:
    agent = await start_agent(node="cp1")
    response = await agent.client.get("/v1/health")
    assert response.status == 200
    body = await response.json()
    assert body["schema"] == 1 and body["status"] == "ok" and body["node"] == "cp1" and body["api"] == "v1"
    assert body["version"]


@pytest.mark.parametrize("method,path,body", PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-Talbench-Token": "wrong"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong-bearer", "wrong-alt", "no-scheme", "empty"],
)
async def test_everything_else_needs_the_token(
    start_agent: StartAgent, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    agent = await start_agent()
    response = await agent.client.request(method, path, json=body, headers=headers)
    assert response.status == 401
    payload = await response.json()
    assert payload["schema"] == 1 and payload["error"] and "\n" not in payload["error"]
    assert agent.app[JOBS].running() == []  # nothing was started


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"X-Talbench-Token": TOKEN},
        {"Authorization": "Bearer bad", "X-Talbench-Token": TOKEN},
    ],
)
@pytest.mark.processes
async def test_either_header_form_works(start_agent: StartAgent, headers: dict[str, str]) -> None:
    agent = await start_agent(node="w1")
    response = await agent.client.get("/v1/facts", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["node"] == "w1"
    facts = body["facts"]
    assert facts["cpus"] >= 1 and facts["kernel"] and facts["python"].startswith("3.") and facts["talbench"]


async def test_facts_come_from_the_callable_passed_in(tmp_path: Path) -> None:
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
        (
            {"schema": 1, "run_id": "r", "probe": "rtt", "params": {**RTT_PARAMS, "count": 100000, "interval": 10}},
            "allows",
        ),
        ([1, 2], "object"),
    ],
)
async def test_bad_job_requests_are_400_with_a_message(start_agent: StartAgent, body: Any, needle: str) -> None:
    agent = await start_agent()
    response = await agent.client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert needle in error and "\n" not in error


async def test_body_that_is_not_json_is_400(start_agent: StartAgent) -> None:
    agent = await start_agent()
    response = await agent.client.post("/v1/jobs", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


async def test_unknown_probe_and_unknown_job_are_404(start_agent: StartAgent) -> None:
    agent = await start_agent()
    response = await agent.client.post(
        "/v1/jobs", json={"schema": 1, "run_id": "r", "probe": "nope", "params": {}}, headers=AUTH
    )
    assert response.status == 404
    assert "nope" in (await response.json())["error"]
    for method in ("GET", "DELETE"):
        response = await agent.client.request(method, "/v1/jobs/0123abcd", headers=AUTH)
        assert response.status == 404
        assert (await response.json())["schema"] == 1
    response = await agent.client.get("/v1/nowhere", headers=AUTH)
    assert response.status == 404


async def test_bad_run_id_on_release_is_400(start_agent: StartAgent) -> None:
    agent = await start_agent()
    response = await agent.client.delete("/v1/runs/" + "x" * 65, headers=AUTH)
    assert response.status == 400


async def test_a_body_nested_thousands_deep_is_400_and_logs_nothing(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    """The standard library's decoder overflowed the stack on it (a 500 and a traceback)."""
    agent = await start_agent()
    for body in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 4 * 1024 * 1024):
        response = await agent.client.post("/v1/jobs", data=body, headers=AUTH)
        assert response.status == 400
        error = (await response.json())["error"]
        assert "nested too deeply" in error and len(error.splitlines()) == 1
    in_params = b'{"schema":1,"run_id":"r","probe":"rtt","params":' + b'{"peers":' * 3000 + b"1" + b"}" * 3001
    response = await agent.client.post("/v1/jobs", data=in_params, headers=AUTH)
    assert response.status == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert agent.app[JOBS].running() == []


async def test_a_body_past_the_limit_is_413_even_without_the_token(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await start_agent()
    body = b" " * (MAX_BODY_BYTES + 1)
    response = await agent.client.post("/v1/jobs", data=body, headers=AUTH)
    assert response.status == 413
    assert str(MAX_BODY_BYTES) in (await response.json())["error"]
    response = await agent.client.post("/v1/jobs", data=body)  # answered, not reset, while it is still sent
    assert response.status == 401
    assert (await agent.client.get("/v1/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-nope"])
async def test_a_compressed_body_is_415(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    """The body is taken as sent: no decoding (and no gzip bomb), whatever the bytes are."""
    agent = await start_agent()
    bomb = gzip.compress(b" " * (16 * 1024 * 1024))
    for body in (bomb, b"\x00garbage"):
        response = await agent.client.post("/v1/jobs", data=body, headers={**AUTH, "Content-Encoding": encoding})
        assert response.status == 415
        assert "Content-Encoding" in (await response.json())["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"schema": True}, "schema"),
        ({"schema": 1.0}, "schema"),
        ({"schema": "1"}, "schema"),
        ({"run_id": None}, "run_id"),
        ({"run_id": "Run-1"}, "run_id"),
        ({"probe": 5}, "probe"),
        ({"probe": ""}, "probe"),
        ({"params": "x"}, "params"),
        ({"params": None}, "params"),
        ({"peers": []}, "unknown parameter 'peers' (known: params, probe, run_id, schema)"),
    ],
)
async def test_envelope_errors_name_the_field(start_agent: StartAgent, changes: dict[str, Any], needle: str) -> None:
    agent = await start_agent()
    body = {"schema": 1, "run_id": "r", "probe": "rtt", "params": RTT_PARAMS, **changes}
    response = await agent.client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert needle in error and len(error.splitlines()) == 1, error
    assert agent.app[JOBS].running() == []


@dataclass(frozen=True)
class Exploding:
    """A job whose parse raises what a careless model or limit might."""

    name: str
    error: BaseException

    def parse(self, params: Any) -> Any:
        raise self.error

    def time_limit(self, params: Any) -> float:
        return 1.0

    async def run(self, params: Any, ctx: Any) -> dict[str, Any]:
        raise AssertionError("never started")


@pytest.mark.parametrize(
    "error",
    [
        ParamError("count: must be at most 5"),
        RecursionError("too deep"),
        TypeError("unhashable\ntype"),
        OverflowError("big"),
        KeyError("peers"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_whatever_a_jobs_parse_raises_is_400_in_one_line(start_agent: StartAgent, error: BaseException) -> None:
    agent = await start_agent({"boom": Exploding("boom", error)})
    response = await agent.client.post(
        "/v1/jobs", json={"schema": 1, "run_id": "r", "probe": "boom", "params": {}}, headers=AUTH
    )
    assert response.status == 400
    message = (await response.json())["error"]
    assert message.startswith("boom: ") and len(message.splitlines()) == 1, message


async def test_a_bug_is_a_500_in_one_line_without_the_traceback(start_agent: StartAgent) -> None:
    def facts() -> dict[str, Any]:
        raise RuntimeError("secret\ndetail")

    agent = await start_agent(facts=facts)
    response = await agent.client.get("/v1/facts", headers=AUTH)
    assert response.status == 500
    assert await response.json() == {"schema": 1, "error": "internal error: RuntimeError"}


async def test_a_body_cut_short_leaves_the_agent_healthy(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await start_agent()
    _, writer = await asyncio.open_connection("127.0.0.1", agent.port)
    writer.write(
        b"POST /v1/jobs HTTP/1.1\r\nHost: a\r\nX-Talbench-Token: "
        + TOKEN.encode()
        + b'\r\nContent-Length: 5000\r\n\r\n{"schema"'
    )
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.2)
    assert (await agent.client.get("/v1/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_chunked_body_with_broken_framing_is_408(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp leaves the handler waiting on such a body: the agent gives up on it in time."""
    agent = await start_agent(body_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: a\r\nX-Talbench-Token: "
        + TOKEN.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head + b'3\r\n{"a\r\n')
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(b"zz\r\n")
    try:
        answer = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "body not received within 0.5s"
    assert (await agent.client.get("/v1/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_what_aiohttp_cannot_parse_is_its_400_and_one_warning_line(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await start_agent()
    for request in (b"GARBAGE\r\n\r\n", b"GET /v1/jobs/\xff HTTP/1.1\r\nHost: a\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", agent.port)
        writer.write(request)
        try:
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        assert answer.split(b" ", 2)[1] == b"400"
    logged = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert logged and all(r.levelno == logging.WARNING and not r.exc_info for r in logged)
    assert all(len(r.getMessage().splitlines()) == 1 for r in logged)
