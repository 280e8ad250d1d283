"""The agent's HTTP API under property-based fuzzing (hypothesis): whatever a client sends — any
JSON, JSON nested thousands deep, bytes that are not JSON or not UTF-8, bodies past the size limit,
compressed bodies, wrong types for every envelope field, random params for every registered job,
odd path segments, with and without the token — the answer is never a 5xx.  Every 4xx is one JSON
line ``{"schema", "error"}``, the agent logs no error (no traceback) and stays healthy.

The HTTP fuzzing runs against an agent whose job table has every registered job's name, parameter
model and time limit (``CheapJob``: the real ``parse`` and ``time_limit``) but a ``run`` that
measures nothing, so a generated body that happens to be valid starts no real work.  The real jobs
are fuzzed through ``parse`` directly.  A request that breaks HTTP itself never reaches the app:
aiohttp answers it 400 in text of its own (test_raw_requests_are_never_a_5xx).  Strategies:
tests/agents/api_strategies.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from talbench.agents.params import ParamError, Params
from talbench.agents.probe import AgentJob, Probe, ProbeContext
from talbench.agents.probes.registry import default_probes
from tests.agents.api_strategies import (
    A_JOB,
    AUTHS,
    CONTENT_TYPES,
    ENCODINGS,
    HEADER_BYTES,
    METHODS,
    RAW_PATHS,
    SEGMENTS,
    authorized,
    bodies,
    dumps,
    envelopes,
    job_params,
)
from tests.agents.helpers import AUTH, Agent, StartAgent

BODY_LIMIT = 64 * 1024  # the fuzzed agent's max_body_bytes: bodies past it stay cheap to send
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TABLE: dict[str, Probe] = default_probes()  # whatever is registered today


@dataclass
class CheapJob:
    """A registered job's name, parameter model and time limit, with a run that measures nothing."""

    real: Probe

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def params(self) -> Any:  # the model the strategies draw params for
        return getattr(self.real, "params", None)

    def parse(self, params: Mapping[str, Any]) -> Any:
        return self.real.parse(params)

    def time_limit(self, params: Any) -> float:
        return self.real.time_limit(params)

    async def run(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        return {"measured": False}


class NoParams(Params):
    pass


async def _nothing(params: NoParams, ctx: ProbeContext) -> dict[str, Any]:
    return {}


NOOP = "fuzz.noop"  # a job ``{}`` starts, for GET and DELETE on a job that exists


@pytest.fixture
def cheap_table() -> dict[str, Probe]:
    table: dict[str, Probe] = {name: CheapJob(job) for name, job in TABLE.items()}
    table[NOOP] = AgentJob(NOOP, NoParams, _nothing, lambda params: 1.0)
    return table


@pytest.fixture
async def agent(start_agent: StartAgent, cheap_table: dict[str, Probe]) -> Agent:
    return await start_agent(cheap_table, facts=lambda: {"fuzz": True}, max_body_bytes=BODY_LIMIT)


async def check(response: ClientResponse) -> dict[str, Any]:
    """Not a 5xx; JSON with the schema; an error is one short line and nothing else."""
    event(f"status {response.status}")
    assert response.status < 500, await response.text()
    payload = json.loads(await response.read())
    assert payload["schema"] == 1
    if response.status >= 400:
        error = payload["error"]
        assert set(payload) == {"schema", "error"}
        assert isinstance(error, str) and error and len(error.splitlines()) == 1 and len(error) <= 500, error
    return payload


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


async def healthy(agent: Agent) -> None:
    response = await agent.client.get("/v1/health")
    assert response.status == 200 and (await response.json())["status"] == "ok"


# ---- POST /v1/jobs ------------------------------------------------------------------------------


@settings(FUZZ, max_examples=800)
@given(
    body=bodies(TABLE, BODY_LIMIT),
    headers=AUTHS,
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    compress=st.booleans(),
)
async def test_job_submissions_are_never_a_5xx(
    agent: Agent,
    cheap_table: dict[str, Probe],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str],
    content_type: str | None,
    encoding: str | None,
    compress: bool,
) -> None:
    caplog.clear()
    headers = dict(headers)
    if content_type:
        headers["Content-Type"] = content_type
    if encoding:
        headers["Content-Encoding"] = encoding
        if compress and encoding != "identity":
            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    response = await agent.client.post("/v1/jobs", data=body, headers=headers)
    payload = await check(response)
    if not authorized(headers):
        assert response.status == 401
    elif encoding not in (None, "identity"):
        assert response.status == 415
    if response.status == 202:  # a valid body by chance: a cheap job, nothing measured
        assert isinstance(cheap_table[payload["job"]["probe"]], CheapJob)
    no_errors_logged(caplog)
    await healthy(agent)


# ---- the other endpoints ------------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(
    method=METHODS,
    base=st.sampled_from(["/v1/jobs/", "/v1/runs/", "/v1/", "/v1/jobs/x/"]),
    segment=SEGMENTS,
    headers=AUTHS,
    body=st.none() | st.binary(max_size=50) | envelopes(TABLE).map(dumps),
)
async def test_any_path_is_never_a_5xx(
    agent: Agent,
    caplog: pytest.LogCaptureFixture,
    method: str,
    base: str,
    segment: str,
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    caplog.clear()
    if segment == A_JOB:
        segment = (await agent.submit(NOOP, {}))["id"]
    response = await agent.client.request(method, base + segment, data=body, headers=headers)
    assert response.status < 500
    if method != "HEAD":
        await check(response)
    if not authorized(headers) and response.url.path != "/v1/health":
        assert response.status == 401
    no_errors_logged(caplog)
    await healthy(agent)


@settings(FUZZ, max_examples=150)
@given(
    method=METHODS,
    path=st.sampled_from(["/v1/health", "/v1/facts"]),
    headers=AUTHS,
    query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    body=st.none() | st.binary(max_size=100),
)
async def test_health_and_facts_answer_as_documented(
    agent: Agent,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    body: bytes | None,
) -> None:
    caplog.clear()
    response = await agent.client.request(method, path, params=query, data=body, headers=headers)
    readable = method in ("GET", "HEAD")
    if path.endswith("health"):
        expected = 200 if readable else 405
    else:
        expected = 401 if not authorized(headers) else 200 if readable else 405
    assert response.status == expected
    if method != "HEAD":
        payload = await check(response)
        if expected == 200:
            assert payload.get("status") == "ok" or payload.get("facts") == {"fuzz": True}
    no_errors_logged(caplog)


async def raw_exchange(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """``request`` sent as is: the answer's status, head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@settings(FUZZ, max_examples=250)
@given(
    method=st.sampled_from([b"GET", b"DELETE", b"POST", b"get", b"G\x00T"]),
    path=RAW_PATHS,
    token=HEADER_BYTES,
    extra=HEADER_BYTES,
)
async def test_raw_requests_are_never_a_5xx(
    agent: Agent, caplog: pytest.LogCaptureFixture, method: bytes, path: bytes, token: bytes, extra: bytes
) -> None:
    """Bytes no HTTP client sends: a token that is not UTF-8, raw bytes in the path and a header.
    What reaches the app is answered in JSON; what breaks HTTP itself aiohttp answers with a 400 of
    its own (text: the app never sees it), logged as one warning line."""
    caplog.clear()
    request = (
        method
        + b" /v1/jobs/"
        + path
        + b" HTTP/1.1\r\nHost: agent\r\nX-Talbench-Token: "
        + token
        + b"\r\nX-Extra: "
        + extra
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, head, body = await raw_exchange(agent.port, request)
    event(f"status {status}")
    assert 400 <= status < 500, (status, body)
    if b"application/json" in head.lower():
        error = json.loads(body)["error"]
        assert len(error.splitlines()) == 1
    no_errors_logged(caplog)
    await healthy(agent)


# ---- the real job table, through parse ----------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_every_registered_job_parses_or_refuses_in_one_line(name: str, data: st.DataObject) -> None:
    """``parse`` returns params or raises ParamError (one line, nothing else, whatever the
    nesting), and the params it returns have a time limit that is a number."""
    job = TABLE[name]
    deep = st.builds(lambda depth: {"peers": nested(depth)}, st.integers(100, 5000))
    raw = data.draw(st.one_of(job_params(job), job_params(job), deep))
    try:
        params = job.parse(raw)
    except ParamError as exc:
        event("refused")
        line = str(exc)
        assert line and len(line.splitlines()) == 1 and len(line) <= 300, line
        return
    event("parsed")
    assert not math.isnan(float(job.time_limit(params)))


async def test_the_fuzzed_agent_takes_a_valid_job(agent: Agent) -> None:
    """The fuzz above is not all refusals: the cheap table runs a valid job (and measures nothing)."""
    job = await agent.wait((await agent.submit(NOOP, {}))["id"])
    assert job["state"] == "done" and job["result"] == {}
    response = await agent.client.delete(f"/v1/runs/{job['run_id']}", headers=AUTH)
    assert response.status == 200
