"""The lab kubelet's calls to the Kubernetes API, as one node (its client certificate), made
with talbench's own client (talbench.bench.kube.client: TLS, bounded requests, merge patches)
plus the watches a kubelet needs and talbench does not, over that client's session.

Errors are ``ApiError`` with the HTTP status (0: the API server was not reached), whatever the
client raised: the kubelet retries on its own schedule and decides by status (404, 409, 403).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from talbench.bench.errors import CouldNotRun
from talbench.bench.kube import client as kube_client
from talbench.bench.kube.client import KubeApiError, KubeClient
from talbench.bench.kube.config import ApiTarget

DEFAULT_TIMEOUT = 10.0
WATCH_SECONDS = 240  # the server ends a watch after this; the client's own limit is a bit longer
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


@contextlib.contextmanager
def _as_api_error() -> Iterator[None]:
    try:
        yield
    except KubeApiError as exc:
        raise ApiError(exc.status, exc.message) from exc
    except CouldNotRun as exc:  # 401 and 403 come as NoPermission, the refusal as its cause
        cause = exc.__cause__
        raise ApiError(cause.status if isinstance(cause, KubeApiError) else 0, str(exc)) from exc


class Api:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

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
        with _as_api_error():
            return await self.client.request(
                method, path, params=params, body=body, timeout=timeout, content_type=content_type
            )

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return await self.call("GET", path, params=params)

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    async def watch(self, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch on ``path`` (a list path) until the server ends it."""
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS), **params}
        limit = aiohttp.ClientTimeout(total=WATCH_SECONDS + 30, sock_connect=DEFAULT_TIMEOUT)
        client = self.client
        try:
            async with client.session.get(
                client.url(path), params=query, headers=client.headers(), timeout=limit
            ) as response:
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


def node_target(server: str, ca: Path, cert: Path, key: Path) -> ApiTarget:
    """The lab's API server with a node's client certificate."""
    return ApiTarget(
        server=server,
        context="lab kubelet",
        in_cluster=False,
        ca_data=ca.read_bytes(),
        client_cert=cert.read_bytes(),
        client_key=key.read_bytes(),
        source=f"lab kubelet ({cert.name})",
    )


@contextlib.asynccontextmanager
async def connect(server: str, ca: Path, cert: Path, key: Path) -> AsyncIterator[Api]:
    """The node's client to the lab's API server, which answered ``/version``."""
    async with contextlib.AsyncExitStack() as stack:
        with _as_api_error():
            target = node_target(server, ca, cert, key)
            client = await stack.enter_async_context(kube_client.connect(target, timeout=DEFAULT_TIMEOUT))
        yield Api(client)
