"""One keep-alive HTTP/1.1 connection from a load client to one etcd member's JSON gateway.

The write path runs on aiohttp's own client protocol (``ResponseHandler``: the llhttp response
parser, payload streams, the socket read timeout) over a connection this module opens, instead
of going through ``ClientSession`` for every write.  The session's per-request machinery
(request object, header merging, cookie filtering, timers, connector bookkeeping, a writer task)
costs more CPU per write than this way, even tuned as far as its public API goes (``make
bench``, benchmarks/bench_etcd_client.py; the figures: docs/measurements.md).  On a control plane
that CPU is taken from the etcd member under test, so a cheaper client measures etcd rather than
itself.

A connection carries one request at a time.  Its request head (method, path, Host, Content-Type,
Content-Length) is framed once: every body of one load has the same length.  A connection that
fails, times out or that the server asks to close is closed and opened again for the next
request, so a late answer can never be taken for the next request's.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp import ClientError
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import EofStream
from yarl import URL

CONNECT_TIMEOUT = 5.0  # seconds
ERROR_BODY_KEPT = 200  # bytes of a failed answer kept for the report


class RequestTimeout(Exception):
    """No answer within the read timeout."""


class ConnectionFailed(Exception):
    """The connection could not be opened, broke, or carried something that is not HTTP."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # the whole body of a failed answer (bounded), empty for a 200


def request_head(url: URL, path: str, content_length: int) -> bytes:
    """The request line and headers of a POST of ``content_length`` bytes of JSON to ``path``
    on ``url``'s host.  Nothing else: the gateway answers JSON whatever the client accepts."""
    host = url.raw_host or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if not url.is_default_port():
        host = f"{host}:{url.port}"
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n"
        "\r\n"
    ).encode("ascii")


class GatewayConnection:
    """POSTs to one path of one member, one at a time, on a connection it keeps open."""

    def __init__(
        self, url: URL, path: str, content_length: int, *, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        if url.scheme not in ("http", "https") or not url.host or url.port is None:
            raise ValueError(f"not an http(s) endpoint: {url}")
        if url.scheme == "https" and ssl_context is None:
            raise ValueError(f"{url}: an https endpoint needs an SSL context")
        self.url = url
        self.timeout = timeout
        self._ssl = ssl_context if url.scheme == "https" else None
        self._head = request_head(url, path, content_length)
        self._content_length = content_length
        self._protocol: ResponseHandler | None = None

    @property
    def is_open(self) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.transport is not None and not protocol.should_close

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.url.host, self.url.port
        if host is None or port is None:
            raise ConnectionFailed(f"{self.url} names no host and port")
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: ResponseHandler(loop),
                    host,
                    port,
                    ssl=self._ssl,
                    server_hostname=host if self._ssl else None,
                ),
                CONNECT_TIMEOUT,
            )
        except TimeoutError as exc:
            raise ConnectionFailed(f"no connection to {self.url} within {CONNECT_TIMEOUT:.0f}s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed(f"cannot connect to {self.url}: {exc}") from exc
        protocol.set_response_params(read_until_eof=False, auto_decompress=False, read_timeout=self.timeout)
        self._protocol = protocol

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def post(self, body: bytes) -> Answer:
        """Send ``body`` (exactly the length this connection was framed for) and wait for the
        whole answer.  Raises RequestTimeout or ConnectionFailed; the connection is then closed
        and the next post opens a new one."""
        if len(body) != self._content_length:
            raise ValueError(f"body of {len(body)} bytes on a connection framed for {self._content_length}")
        return await self._exchange(self._head + body)

    async def post_to(self, path: str, body: bytes) -> Answer:
        """The same for any path and body (framed for this one request): warm-up and checks."""
        return await self._exchange(request_head(self.url, path, len(body)) + body)

    async def _exchange(self, request: bytes) -> Answer:
        if not self.is_open:
            self.close()
            await self.open()
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        try:
            protocol.start_timeout()
            protocol.transport.write(request)
            message, payload = await protocol.read()
            data = await payload.read()
        except TimeoutError as exc:  # aiohttp's socket read timeout is one
            self.close()
            raise RequestTimeout(f"no answer within {self.timeout:g}s from {self.url}") from exc
        except (ClientError, HttpProcessingError, EofStream, OSError) as exc:
            self.close()
            raise ConnectionFailed(f"{type(exc).__name__} from {self.url}: {exc}"[:300]) from exc
        if protocol.should_close:
            self.close()
        status = message.code
        return Answer(status, b"" if status == 200 else data[:ERROR_BODY_KEPT])
