"""The thin layer over the Kubernetes REST API: JSON dicts in and out, every call bounded.

Only a dozen endpoints are used (nodes, pods, events, namespaces, serviceaccounts, secrets,
daemonsets, configmaps, the pod proxy), so this is plain aiohttp rather than a generated client:
the same session also carries the pod-proxy traffic of bench.agent_client.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from talbench.bench.errors import CouldNotRun, NoPermission
from talbench.bench.kube import transport
from talbench.bench.kube.config import ApiTarget, auth_header, describe

DEFAULT_TIMEOUT = 15.0
NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


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

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: ApiTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: transport.Credentials | None = None,
    ) -> None:
        self.session = session
        self.credentials = credentials or transport.Credentials(target, target, None, False)
        self.timeout = timeout

    @property
    def target(self) -> ApiTarget:
        """The API target with the credentials currently in use (an exec plugin's latest)."""
        return self.credentials.target

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
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        limit = timeout or self.timeout
        data = None if body is None else json.dumps(body)
        try:
            async with self.session.request(
                method,
                self.url(api_path),
                params=dict(params or {}),
                data=data,
                headers={
                    "Accept": "application/json",
                    **({"Content-Type": content_type} if data else {}),
                    **self.headers(),
                },
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
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CouldNotRun(
                f"TLS verification of the Kubernetes API server at {describe(self.target)} failed: "
                f"{_certificate_problem(exc.certificate_error)}",
                hint=_tls_hint(self.target, exc.certificate_error),
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

    async def merge_patch(self, api_path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of one object."""
        return await self.request("PATCH", api_path, body=dict(patch), content_type="application/merge-patch+json")

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


def _certificate_problem(error: Exception) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message).rstrip(".")
    return _one_line(error)


def _tls_hint(target: ApiTarget, error: Exception) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_code in NAME_MISMATCH:
        if target.tls_server_name:
            return f"the certificate does not name {target.tls_server_name!r}, the cluster's tls-server-name"
        return "set the cluster's tls-server-name in the kubeconfig to a name the certificate has"
    return "check the cluster's certificate-authority(-data) in the kubeconfig"


@contextlib.asynccontextmanager
async def connect(target: ApiTarget, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[KubeClient]:
    """A client for ``target`` whose API server answered ``/version``; CouldNotRun naming the
    server otherwise (unreachable, TLS failure, refused credentials).  Its session carries the
    credentials, tls-server-name and proxy to every request for the API server, pod-proxy calls
    included (bench.kube.transport)."""
    credentials = await transport.Credentials.fetch(target)
    async with transport.session(credentials) as session:
        client = KubeClient(session, credentials.target, timeout=timeout, credentials=credentials)
        await client.version()
        yield client
