"""The load generator's keep-alive gateway connection against a real HTTP server on 127.0.0.1
(aiohttp.web): answers, keep-alive, errors, timeouts and reconnection as a load client sees them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from talbench.agents.probes.etcd.connection import ConnectionFailed, GatewayConnection, RequestTimeout, request_head
from tests.agents.helpers import free_port

BODY = json.dumps({"key": "a2V5", "value": "dmFsdWU="}).encode()


class Gateway:
    """A stand-in for etcd's JSON gateway that remembers what it was sent and over which
    connection; ``behaviour`` picks the answer per request (by the request's "key")."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername"))
        self.headers.append(dict(request.headers))
        payload = await request.json()
        self.requests.append(payload)
        key = payload.get("key")
        if key == "slow":
            await asyncio.sleep(1.0)
            return web.json_response({"late": True}, status=500)
        if key == "bad":
            return web.json_response({"error": "etcdserver: request is too large", "code": 3}, status=400)
        if key == "close":
            return web.json_response({"header": {}}, headers={"Connection": "close"})
        if key == "drop":
            request.transport.close()
            await asyncio.sleep(0.2)
        if key == "chunked":
            response = web.StreamResponse(status=503)
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"error":')
            await response.write(b'"no leader"}')
            await response.write_eof()
            return response
        return web.json_response({"header": {"revision": str(len(self.requests))}})

    @property
    def url(self) -> URL:
        assert self.server is not None
        return URL(f"http://127.0.0.1:{self.server.port}")


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/v3/kv/put", gw.handle)
    gw.server = TestServer(app, host="127.0.0.1", port=free_port())
    await gw.server.start_server()
    try:
        yield gw
    finally:
        await gw.server.close()


def body_for(key: str) -> bytes:
    return json.dumps({"key": key}).encode()


def connection(url: URL, body: bytes = BODY, timeout: float = 5.0) -> GatewayConnection:
    return GatewayConnection(url, "/v3/kv/put", len(body), timeout=timeout, ssl_context=None)


async def test_writes_reuse_one_connection_and_send_what_the_gateway_needs(gateway: Gateway) -> None:
    conn = connection(gateway.url)
    try:
        answers = [await conn.post(BODY) for _ in range(5)]
    finally:
        conn.close()
    assert [a.status for a in answers] == [200] * 5
    assert len(set(gateway.peers)) == 1  # keep-alive: one connection for all five
    assert gateway.requests == [json.loads(BODY)] * 5
    sent = gateway.headers[0]
    assert sent["Content-Type"] == "application/json"
    assert sent["Host"] == f"127.0.0.1:{gateway.url.port}"
    assert sent["Content-Length"] == str(len(BODY))


async def test_a_failed_answer_comes_back_with_its_body(gateway: Gateway) -> None:
    conn = connection(gateway.url, body_for("bad"))
    try:
        answer = await conn.post(body_for("bad"))
        chunked = await conn.post_to("/v3/kv/put", body_for("chunked"))
    finally:
        conn.close()
    assert answer.status == 400 and b"request is too large" in answer.body
    assert chunked.status == 503 and chunked.body == b'{"error":"no leader"}'


async def test_a_timed_out_answer_is_never_taken_for_the_next_one(gateway: Gateway) -> None:
    conn = connection(gateway.url, body_for("slow"), timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"no answer within 0\.3s"):
            await conn.post(body_for("slow"))
        assert time.monotonic() - started < 0.9
        # The slow request's late 500 arrives on the old connection, which is closed: the next
        # write gets its own answer on a new one.
        answer = await conn.post_to("/v3/kv/put", body_for("fast"))
        await asyncio.sleep(1.0)
        again = await conn.post_to("/v3/kv/put", body_for("fast"))
    finally:
        conn.close()
    assert (answer.status, again.status) == (200, 200)
    assert len(set(gateway.peers)) == 2


async def test_a_server_that_closes_gets_a_new_connection(gateway: Gateway) -> None:
    conn = connection(gateway.url, body_for("close"))
    try:
        first = await conn.post(body_for("close"))
        second = await conn.post(body_for("close"))
        with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1"):
            await conn.post_to("/v3/kv/put", body_for("drop"))
        third = await conn.post(body_for("close"))
    finally:
        conn.close()
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert len(set(gateway.peers)) == 4  # close, close, drop, close: a connection each


async def test_an_unreachable_member_fails_fast_and_a_wrong_body_is_refused() -> None:
    url = URL(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    conn = connection(url)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await conn.post(BODY)
    assert time.monotonic() - started < 2
    with pytest.raises(ValueError, match="framed for"):
        await conn.post(BODY + b" ")
    with pytest.raises(ValueError, match="not an http"):
        GatewayConnection(URL("unix:///tmp/x"), "/v3/kv/put", 1, timeout=1, ssl_context=None)
    with pytest.raises(ValueError, match="needs an SSL context"):  # never plaintext to an https member
        GatewayConnection(URL("https://127.0.0.1:2379"), "/v3/kv/put", 1, timeout=1, ssl_context=None)


def test_the_host_header_names_the_member_as_a_browser_would() -> None:
    head = request_head(URL("http://[fd00::1]:12379"), "/v3/kv/put", 42)
    assert head == (
        b"POST /v3/kv/put HTTP/1.1\r\nHost: [fd00::1]:12379\r\n"
        b"Content-Type: application/json\r\nContent-Length: 42\r\n\r\n"
    )
    assert b"Host: etcd.example:2379\r\n" in request_head(URL("https://etcd.example:2379"), "/", 1)
    assert b"Host: etcd.example\r\n" in request_head(URL("https://etcd.example"), "/", 1)
