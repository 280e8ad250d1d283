"""The thin layer over the Kubernetes REST API: JSON dicts in and out, every call bounded.

Only a dozen endpoints are used (nodes, pods, events, namespaces, serviceaccounts, secrets,
daemonsets, configmaps, the pod proxy), so this is plain aiohttp rather than a generated client:
the same session also carries the pod-proxy traffic of bench.agent_client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from talbench.bench.errors import CouldNotRun, NoPermission
from talbench.bench.kube.config import ApiTarget, auth_header, describe, ssl_context, with_exec_credentials

DEFAULT_TIMEOUT = 15.0


class KubeApiError(Exception):
    """The API server answered with an error status (message is one line)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def path(
    group_version: str, plural: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    """``/api/v1/namespaces/NS/pods/NAME`` or ``/apis/apps/v1/...`` for ``group_version``."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=":"))
    if sub:
        parts.append(sub)
    return "/".join(parts)


class KubeClient:
    """Requests against one API server.  Create with :func:`connect`."""

    def __init__(self, session: aiohttp.ClientSession, target: ApiTarget, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.session = session
        self.target = target
        self.timeout = timeout

    @property
    def server(self) -> str:
        return self.target.server

    def headers(self) -> dict[str, str]:
        auth = auth_header(self.target)
        return {"Authorization": auth} if auth else {}

    def url(self, api_path: str) -> str:
        return self.target.server + api_path

    async def request(
        self,
        method: str,
        api_path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        limit = timeout or self.timeout
        try:
            async with self.session.request(
                method,
                self.url(api_path),
                params=dict(params or {}),
                json=body,
                headers={"Accept": "application/json", **self.headers()},
                timeout=aiohttp.ClientTimeout(total=limit),
                server_hostname=self.target.tls_server_name,
            ) as response:
                text = await response.text()
                payload: Any
                try:
                    payload = await response.json(content_type=None) if text else {}
                except ValueError:
                    payload = {"message": text[:200]}
                if response.status >= 400:
                    message = payload.get("message") if isinstance(payload, dict) else None
                    error = KubeApiError(
                        response.status,
                        response.reason or "",
                        str(message or text[:200]).splitlines()[0] if (message or text) else "",
                    )
                    if response.status == 401:
                        raise NoPermission(
                            f"the Kubernetes API server at {describe(self.target)} refused the credentials (401 Unauthorized)",
                            hint="check the kubeconfig user (expired token or certificate?)",
                        ) from error
                    if response.status == 403:
                        raise NoPermission(
                            f"the Kubernetes API refused {method} {api_path}: {error.message}",
                            hint="'talbench manifests' prints the ClusterRole talbench needs",
                        ) from error
                    raise error
                return payload if isinstance(payload, dict) else {"items": payload}
        except TimeoutError as exc:
            raise CouldNotRun(
                f"the Kubernetes API server at {describe(self.target)} did not answer {method} {api_path} within {limit:g}s"
            ) from exc
        except aiohttp.ClientConnectionError as exc:
            raise CouldNotRun(
                f"cannot reach the Kubernetes API server at {describe(self.target)}: {_one_line(exc)}",
                hint="check the kubeconfig server address and that the cluster is up",
            ) from exc
        except aiohttp.ClientError as exc:
            raise CouldNotRun(f"Kubernetes API request {method} {api_path} failed: {_one_line(exc)}") from exc

    async def get(self, api_path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", api_path, params=params)

    async def get_or_none(self, api_path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", api_path)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, api_path: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        answer = await self.request("GET", api_path, params=params)
        return [item for item in answer.get("items") or () if isinstance(item, dict)]

    async def create(self, api_path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", api_path, body=dict(body))

    async def delete(self, api_path: str, *, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request(
                "DELETE", api_path, body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def version(self) -> dict[str, Any]:
        return await self.request("GET", "/version")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.asynccontextmanager
async def connect(target: ApiTarget, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[KubeClient]:
    """A client for ``target`` whose API server answered ``/version``; CouldNotRun naming the
    server otherwise (unreachable, TLS failure, refused credentials)."""
    target = await with_exec_credentials(target)
    try:
        tls = ssl_context(target)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise CouldNotRun(f"kubeconfig context {target.context}: unusable TLS material: {_one_line(exc)}") from exc
    connector = aiohttp.TCPConnector(ssl=tls, limit=64)
    # The session's default Authorization also covers requests made without headers of their
    # own through this session (AgentClient.health through the pod proxy).
    auth = auth_header(target)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": auth} if auth else None) as session:
        client = KubeClient(session, target, timeout=timeout)
        await client.version()
        yield client
