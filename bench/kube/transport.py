"""The HTTP session to one API server, for the API calls and the pod-proxy calls alike.

Every request through the session to the API server's origin goes out with the connection's
current credentials and its ``tls-server-name`` (a client-side middleware, so the pod-proxy calls
of bench.agent_client, which carry their own headers, get both too), through the proxy kubectl
would use.  Exec-plugin credentials are kept current: fetched again shortly before their
``expirationTimestamp``, and once more when the API server refuses them (401), the request then
retried once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from yarl import URL

from talbench.bench.errors import CouldNotRun
from talbench.bench.kube.config import ApiTarget, auth_header, load_client_certificate, proxy_for, ssl_context
from talbench.bench.kube.exec_plugin import exec_credentials

RENEW_BEFORE = 5.0  # seconds before an exec credential's expiry that it is fetched again
MIN_REUSE = 1.0  # an exec credential is used at least this long (a plugin handing out stale ones)


class Credentials:
    """The credentials of one connection to an API server, kept current."""

    def __init__(
        self,
        configured: ApiTarget,
        current: ApiTarget,
        expires: float | None,
        tls: ssl.SSLContext | bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.configured = configured  # as the kubeconfig says (the exec plugin not yet run)
        self.target = current  # with the exec plugin's last credentials
        self.tls = tls
        self.generation = 0  # +1 on each fetch: a request refused with older ones retries at once
        self.fetches = 1 if configured.exec_plugin is not None else 0
        self._clock = clock
        self._renew_at = self._renew_time(expires)
        self._fetching: asyncio.Future[None] | None = None

    @classmethod
    async def fetch(cls, target: ApiTarget) -> Credentials:
        """Run the exec plugin (if any) and build the TLS context."""
        current, expires = await exec_credentials(target)
        try:
            tls = ssl_context(current)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise CouldNotRun(f"kubeconfig context {target.context}: unusable TLS material: {text}") from exc
        return cls(target, current, expires, tls)

    @property
    def refreshable(self) -> bool:
        return self.configured.exec_plugin is not None

    def _renew_time(self, expires: float | None) -> float | None:
        if expires is None or not self.refreshable:
            return None
        now = self._clock()
        return max(expires - min(RENEW_BEFORE, max(0.0, expires - now) / 2), now + MIN_REUSE)

    def stale(self) -> bool:
        return self._renew_at is not None and self._clock() >= self._renew_at

    def authorization(self) -> str | None:
        return auth_header(self.target)

    async def renew(self, seen: int) -> None:
        """Fetch the exec credentials again unless that happened since generation ``seen``; one
        fetch however many requests ask for it at once (and a cancelled request does not cancel
        it)."""
        if not self.refreshable or self.generation != seen:
            return
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        await asyncio.shield(self._fetching)

    async def _fetch(self) -> None:
        try:
            current, expires = await exec_credentials(self.configured, fresh=True)
            if current.client_cert and current.client_key and isinstance(self.tls, ssl.SSLContext):
                load_client_certificate(self.tls, current.client_cert, current.client_key)
            self.target = current
            self.fetches += 1
            self.generation += 1
            self._renew_at = self._renew_time(expires)
        finally:
            self._fetching = None


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def middleware(credentials: Credentials) -> aiohttp.ClientMiddlewareType:
    """Credentials and TLS server name on every request to the API server (see the module)."""
    origin = _origin(URL(credentials.target.server))

    def authorize(request: aiohttp.ClientRequest) -> None:
        auth = credentials.authorization()
        if auth:
            request.headers["Authorization"] = auth
        else:  # client certificate: nothing (an empty header a pod-proxy call sets included)
            request.headers.popall("Authorization", None)

    async def apply(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        if _origin(request.url) != origin:
            return await handler(request)
        if credentials.target.tls_server_name and not request.server_hostname:
            request.server_hostname = credentials.target.tls_server_name
        if credentials.stale():
            await credentials.renew(credentials.generation)
        seen = credentials.generation
        authorize(request)
        response = await handler(request)
        if response.status != 401 or not credentials.refreshable:
            return response
        response.release()
        await credentials.renew(seen)
        authorize(request)
        return await handler(request)

    return apply


@contextlib.asynccontextmanager
async def session(
    credentials: Credentials, env: Mapping[str, str] | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to ``credentials``' API server (its TLS, credentials and proxy)."""
    proxy = proxy_for(credentials.target, os.environ if env is None else env)
    proxy_auth = None
    if proxy is not None:
        url = URL(proxy)
        proxy_auth = aiohttp.BasicAuth.from_url(url)
        proxy = str(url.with_user(None)) if proxy_auth else proxy
    connector = aiohttp.TCPConnector(ssl=credentials.tls, limit=64)
    async with aiohttp.ClientSession(
        connector=connector, middlewares=(middleware(credentials),), proxy=proxy, proxy_auth=proxy_auth
    ) as client:
        yield client
