"""The lab kubelet's own few calls to the Kubernetes API, as one node (its client certificate):
JSON requests with merge patches, and watches as streams of events.  Every call is bounded.

The lab kubelet plays the cluster's part, not the coordinator's, so it does not use
bench/kube/client.py (the coordinator's client; the layer contract keeps bench.lab and bench.kube
apart): it needs watches and patches that client has no use for.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

DEFAULT_TIMEOUT = 10.0
WATCH_SECONDS = 240  # the server ends a watch after this; the client's own limit is a bit longer
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Api:
    def __init__(self, session: aiohttp.ClientSession, server: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.session = session
        self.server = server
        self.timeout = timeout

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            async with self.session.request(
                method,
                self.server + path,
                params=dict(params or {}),
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise ApiError(response.status, _message(text))
                answer = json.loads(text) if text else {}
                return answer if isinstance(answer, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(0, f"{method} {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return await self.call("GET", path, params=params)

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    async def watch(self, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch on ``path`` (a list path) until the server ends it."""
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS), **params}
        limit = aiohttp.ClientTimeout(total=WATCH_SECONDS + 30, sock_connect=self.timeout)
        try:
            async with self.session.get(self.server + path, params=query, timeout=limit) as response:
                if response.status >= 400:
                    raise ApiError(response.status, _message(await response.text()))
                async for line in response.content:
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(0, f"watch {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def _message(text: str) -> str:
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:200]
    return str(payload.get("message") if isinstance(payload, dict) else payload)[:300]


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


@contextlib.asynccontextmanager
async def connect(server: str, ca: Path, cert: Path, key: Path) -> AsyncIterator[Api]:
    connector = aiohttp.TCPConnector(ssl=tls_context(ca, cert, key), limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, server)
