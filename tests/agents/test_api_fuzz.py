"""The agent's HTTP API under property-based fuzzing (hypothesis): whatever a client sends — any
JSON, JSON nested thousands deep, bytes that are not JSON or not UTF-8, bodies past the size limit
or gzip bombs, wrong types for every envelope field, random params for every registered job, odd
path segments, with and without the token — the answer is never a 5xx.  Every 4xx is one JSON
line ``{"schema", "error"}``, the agent logs no error (no traceback), stays healthy, and no real
job starts measuring.

The HTTP fuzzing runs against an agent whose job table has the real job names, parameter models
and time limits (``CheapJob``: the real ``parse`` and ``time_limit``) but a ``run`` that measures
nothing, so a generated body that happens to be valid starts no real work.  The real jobs are
fuzzed through ``parse`` directly.  Requests that break HTTP itself (a bad request line, an unknown
Content-Encoding) are answered by aiohttp before the app sees them: test_raw_requests_* checks
that they too are 4xx and leave the agent healthy.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import types
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import quote

import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, RootModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from talbench.agents.app import JOBS
from talbench.agents.params import ParamError
from talbench.agents.probe import Probe, ProbeContext
from talbench.agents.probes import default_probes
from tests.agents.helpers import TOKEN, Agent, StartAgent

BODY_LIMIT = 64 * 1024  # the fuzzed agent's max_body_bytes: "huge" stays cheap to send
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TABLE: dict[str, Probe] = default_probes()  # whatever is registered today
NAMES = sorted(TABLE)


@dataclass
class CheapJob:
    """A registered job's name, parameter model and time limit, with a run that measures nothing."""

    real: Probe
    runs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.real.name

    def parse(self, params: Mapping[str, Any]) -> Any:
        return self.real.parse(params)

    def time_limit(self, params: Any) -> float:
        return self.real.time_limit(params)

    async def run(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        self.runs.append(ctx.run_id)
        return {"measured": False}


# ---- strategies -----------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON = st.recursive(
    SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=8
)
EDGE_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**300, 0.5, -0.0, 1e-300, 1e308, float("inf")])


def values_for(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON-like values near what ``annotation`` accepts, mixed with anything at all."""
    origin, args = get_origin(annotation), get_args(annotation)
    near: st.SearchStrategy[Any]
    if origin is Annotated:
        return values_for(args[0], depth)
    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return values_for(annotation.model_fields["root"].annotation, depth)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        near = params_for(annotation, depth + 1)
    elif origin is Literal:
        near = st.sampled_from(args)
    elif origin in (Union, types.UnionType):
        near = st.one_of([values_for(arg, depth) for arg in args])
    elif origin in (tuple, list, set, frozenset):
        near = st.lists(values_for(args[0] if args else Any, depth), max_size=3)
    elif origin in (dict, Mapping):
        near = st.dictionaries(st.text(max_size=8), values_for(args[1] if args else Any, depth), max_size=3)
    elif annotation is bool:
        near = st.booleans()
    elif annotation is int:
        near = st.integers(-5, 100) | st.integers(-(2**64), 2**64) | EDGE_NUMBERS
    elif annotation is float:
        near = st.floats(-1e6, 1e6) | st.floats(allow_nan=False) | EDGE_NUMBERS
    elif annotation is str:
        near = st.sampled_from(["127.0.0.1", "::1", "localhost", "a", "", "a-b"]) | st.text(max_size=20)
    else:
        return JSON
    return st.one_of(near, near, near, SCALARS)  # mostly near-valid, sometimes of another type


def field_values(info: FieldInfo, depth: int) -> st.SearchStrategy[Any]:
    """A field's values, with its declared bounds and just past them."""
    edges: list[float] = []
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            bound = getattr(item, attr, None)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool):
                edges += [bound, bound - 1, bound + 1, bound * 10, bound + 0.5]
    values = values_for(info.annotation, depth)
    return st.one_of(values, st.sampled_from(edges)) if edges else values


@st.composite
def params_for(draw: st.DrawFn, model: type[BaseModel], depth: int = 0) -> Any:
    """Near-valid params of ``model``: every default, the required fields and up to 3 others drawn
    (near-valid or of another type), now and then one field dropped or an unknown one added.
    A RootModel (a union of actions): its root's.  Deeper than 3 models: any dict."""
    if issubclass(model, RootModel):
        return draw(values_for(model, depth))
    if depth > 3:
        return draw(st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    body = {key: to_jsonable_python(info.get_default(call_default_factory=True)) for key, info in fields.items() if not info.is_required()}
    required = [key for key, info in fields.items() if info.is_required()]
    for key in [*required, *draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))] if fields else []:
        body[key] = draw(field_values(fields[key], depth))
    change = draw(st.sampled_from(["none", "none", "none", "drop", "unknown"]))
    if change == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif change == "unknown":
        body[draw(st.text(max_size=5))] = draw(SCALARS)
    return body


def job_params(name: str) -> st.SearchStrategy[Any]:
    model = getattr(TABLE[name], "params", None)
    random = st.dictionaries(st.text(max_size=8), JSON, max_size=4)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return st.one_of(params_for(model), params_for(model), random)
    return random


ENVELOPE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "schema": st.just(1) | st.sampled_from([0, 2, True, 1.0, "1", None, [1]]),
    "run_id": st.sampled_from(["r", "run-1", "a" * 54, "a" * 55, "-r", "R", "a/b", "a\n", ""]) | st.text(max_size=60),
}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A job request: each field right, wrong (any JSON) or absent; params for the named job."""
    name = draw(st.sampled_from([*NAMES, "nope", ""])) if NAMES else "nope"
    params = job_params(name) if name in TABLE else JSON
    body: dict[str, Any] = {}
    for key, good in (*ENVELOPE_VALUES.items(), ("probe", st.just(name)), ("params", params)):
        choice = draw(st.sampled_from(["good", "good", "good", "good", "wrong", "absent"]))
        if choice != "absent":
            body[key] = draw(good if choice == "good" else SCALARS | JSON)
    body.update(draw(st.dictionaries(st.text(max_size=5), SCALARS, max_size=1)))  # sometimes an unknown field
    return body


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def deep(depth: int, opener: bytes, closed: bool) -> bytes:
    closer = {b"[": b"]", b'{"a":': b"}", b'[{"a":': b"}]"}[opener]
    return opener * depth + (b"1" + closer * depth if closed else b"")


DEEP = st.builds(deep, st.integers(150, 6000), st.sampled_from([b"[", b'{"a":', b'[{"a":']), st.booleans())
ODD_BODIES = st.sampled_from(
    [b"", b" ", b"null", b"[]", b"1e999", b"1" * 5000, b"NaN", b"Infinity", b'"\\ud800"', b"\xef\xbb\xbf{}",
     b'{"schema":1e400}', b'{"schema":1,"schema":1}', b"\x00", b"{}" * 3, b'{"a":1}garbage', "\ud800".encode("utf-8", "surrogatepass")]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(dumps(draw(envelopes())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["cut", "flip", "insert"]))
        if what == "cut":
            del data[at:]
        elif what == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(BODY_LIMIT - 100, 3 * BODY_LIMIT))
    kind = draw(st.sampled_from(["spaces", "deep", "string", "array"]))
    if kind == "spaces":  # a valid envelope padded with whitespace
        return b" " * size + dumps({"schema": 1, "run_id": "r", "probe": NAMES[0] if NAMES else "x", "params": {}})
    if kind == "deep":
        return b"[" * size
    if kind == "string":
        return b'{"schema":1,"run_id":"r","probe":"' + b"p" * size + b'"}'
    return b"[" + b"1," * (size // 2) + b"1]"


def in_params(nested: bytes) -> bytes:
    return b'{"schema":1,"run_id":"r","probe":"%s","params":{"x":%s}}' % ((NAMES[0] if NAMES else "x").encode(), nested)


BODIES = st.one_of(
    envelopes().map(dumps),
    envelopes().map(dumps),
    envelopes().map(dumps),
    JSON.map(dumps),
    DEEP,
    DEEP.map(in_params),
    st.binary(max_size=300),
    ODD_BODIES,
    mutated(),
    huge(),
)
TOKEN_CHARS = st.characters(blacklist_categories=("Cc", "Cs"))  # what an HTTP client can put in a header
AUTHS = st.one_of(
    st.sampled_from([{}, {"Authorization": f"Bearer {TOKEN}"}, {"X-Talbench-Token": TOKEN}, {"Authorization": TOKEN},
                     {"Authorization": "Bearer"}, {"Authorization": f"Basic {TOKEN}"}, {"X-Talbench-Token": TOKEN + "x"}]),
    st.builds(lambda t: {"Authorization": f"Bearer {t}"}, st.text(TOKEN_CHARS, max_size=40)),
    st.builds(lambda t: {"X-Talbench-Token": t}, st.text(TOKEN_CHARS, max_size=40)),
)
CONTENT_TYPES = st.sampled_from([None, "application/json", "text/plain", "application/json; charset=latin-1",
                                 "application/json; charset=nope", "multipart/form-data; boundary=x"])
ENCODINGS = st.sampled_from([None, None, None, "identity", "gzip", "deflate", "br", "zstd", "x-nope"])


def authorized(headers: Mapping[str, str]) -> bool:
    return headers.get("Authorization") == f"Bearer {TOKEN}" or headers.get("X-Talbench-Token", "").strip() == TOKEN


async def check(response: ClientResponse) -> dict[str, Any]:
    """Not a 5xx; JSON with the schema; an error is one short line and nothing else."""
    assert response.status < 500, await response.text()
    payload = json.loads(await response.read())
    assert payload["schema"] == 1
    if response.status >= 400:
        error = payload["error"]
        assert set(payload) == {"schema", "error"}
        assert isinstance(error, str) and error and len(error.splitlines()) == 1 and len(error) <= 500, error
    return payload


def no_errors_logged(caplog: pytest.LogCaptureFixture, ignore: str = "") -> None:
    errors = [r for r in caplog.records if (r.levelno >= logging.ERROR or r.exc_info) and not (ignore and r.name == ignore)]
    assert not errors, [r.getMessage() for r in errors]


async def healthy(agent: Agent) -> None:
    response = await agent.client.get("/v1/health")
    assert response.status == 200 and (await response.json())["status"] == "ok"


@pytest.fixture
async def cheap_table() -> dict[str, CheapJob]:
    return {name: CheapJob(job) for name, job in TABLE.items()}


@pytest.fixture
async def agent(start_agent: StartAgent, cheap_table: dict[str, CheapJob]) -> Agent:
    return await start_agent(cheap_table, facts=lambda: {"fuzz": True}, max_body_bytes=BODY_LIMIT)


# ---- the fuzz -------------------------------------------------------------------------------


@settings(FUZZ, max_examples=1000)
@given(body=BODIES, headers=AUTHS, content_type=CONTENT_TYPES, encoding=ENCODINGS, compress=st.booleans())
async def test_job_submissions_are_never_a_5xx(
    agent: Agent, cheap_table: dict[str, CheapJob], caplog: pytest.LogCaptureFixture,
    body: bytes, headers: dict[str, str], content_type: str | None, encoding: str | None, compress: bool,
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
        assert payload["job"]["probe"] in cheap_table
    no_errors_logged(caplog)
    await healthy(agent)


JOB = "<a job's id>"
SEGMENTS = st.one_of(
    st.text(max_size=60).map(lambda s: quote(s, safe="")),
    st.binary(max_size=30).map(lambda b: quote(b, safe="")),
    st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S"), exclude_characters="?#/\\"), max_size=30),
    st.sampled_from([JOB, "", ".", "..", "%", "%zz", "%00", "%FF", "%2e%2e", "a%2Fb", "r", "run-1", "x" * 65, "0123abcd"]),
)
METHODS = st.sampled_from(["GET", "DELETE", "POST", "PUT", "PATCH", "OPTIONS", "HEAD"])


@settings(FUZZ, max_examples=500)
@given(
    method=METHODS, base=st.sampled_from(["/v1/jobs/", "/v1/runs/", "/v1/", "/v1/jobs/x/"]), segment=SEGMENTS,
    headers=AUTHS, body=st.none() | st.binary(max_size=50) | envelopes().map(dumps),
)
async def test_any_path_is_never_a_5xx(
    agent: Agent, caplog: pytest.LogCaptureFixture, method: str, base: str, segment: str, headers: dict[str, str], body: bytes | None,
) -> None:
    caplog.clear()
    if segment == JOB:
        job = await agent.submit(NAMES[0], {}) if NAMES and _valid(NAMES[0], {}) else None
        segment = job["id"] if job else "none"
    response = await agent.client.request(method, base + segment, data=body, headers=headers)
    if method != "HEAD":
        await check(response)
    assert response.status < 500
    if not authorized(headers) and response.url.path != "/v1/health":
        assert response.status == 401
    no_errors_logged(caplog)
    await healthy(agent)


def _valid(name: str, params: dict[str, Any]) -> bool:
    try:
        TABLE[name].parse(params)
    except ParamError:
        return False
    return True


@settings(FUZZ, max_examples=150)
@given(
    method=METHODS, path=st.sampled_from(["/v1/health", "/v1/facts"]), headers=AUTHS,
    query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3), body=st.none() | st.binary(max_size=100),
)
async def test_health_and_facts_answer_as_documented(
    agent: Agent, caplog: pytest.LogCaptureFixture, method: str, path: str, headers: dict[str, str], query: dict[str, str],
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


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_every_registered_job_parses_or_refuses_in_one_line(name: str, data: st.DataObject) -> None:
    """The real job table, without HTTP: ``parse`` returns params or raises ParamError (one line,
    nothing else, whatever the nesting), and the params it returns have a numeric time limit."""
    job = TABLE[name]
    raw = data.draw(st.one_of(job_params(name), job_params(name), st.builds(lambda d: {"peers": nested(d)}, st.integers(100, 5000))))
    try:
        params = job.parse(raw)
    except ParamError as exc:
        line = str(exc)
        assert line and len(line.splitlines()) == 1 and len(line) <= 300, line
        return
    assert not math.isnan(float(job.time_limit(params)))


async def raw_exchange(port: int, request: bytes) -> tuple[int | None, bytes]:
    """Sends ``request`` as is; the answer's status (None: the connection closed unanswered) and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    words = head.split(b" ", 2)
    return (int(words[1]) if len(words) > 1 and words[1].isdigit() else None), body


HEADER_BYTES = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(FUZZ, max_examples=300)
@given(
    method=st.sampled_from([b"GET", b"DELETE", b"POST", b"get", b"G\x00T"]), path=st.binary(max_size=30),
    token=HEADER_BYTES, extra=HEADER_BYTES,
)
async def test_raw_requests_are_never_a_5xx(
    agent: Agent, caplog: pytest.LogCaptureFixture, method: bytes, path: bytes, token: bytes, extra: bytes,
) -> None:
    """Bytes no HTTP client would send: not UTF-8 in the token, raw bytes in the path, a broken
    header.  What reaches the app is answered in JSON; what aiohttp refuses itself is a 400 (its
    own text, and its own log line: aiohttp.server is not checked here)."""
    caplog.clear()
    request = (
        method + b" /v1/jobs/" + path + b" HTTP/1.1\r\nHost: agent\r\nX-Talbench-Token: " + token
        + b"\r\nX-Extra: " + extra + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, body = await raw_exchange(agent.port, request)
    assert status is None or 400 <= status < 500, (status, body)
    if body.startswith(b"{"):
        error = json.loads(body)["error"]
        assert len(error.splitlines()) == 1
    no_errors_logged(caplog, ignore="aiohttp.server")
    await healthy(agent)
