"""The lab kubelet's endpoint on each node (``<node address>:10250``, HTTPS with the node's
certificate, clients must present a certificate of the lab's CA: the API server's
kubelet-client one): what ``kubectl logs`` reaches through the API server.

    GET /containerLogs/<namespace>/<pod>/<container>?tailLines=N&limitBytes=N&previous=true
    GET /healthz

The listening sockets are made in each node's network namespace before the kubelet joins its
own (``listen``); a socket keeps the namespace it was made in.  Logs are not followed: what the
container wrote so far is returned.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from testbed.kubelab.control.forward import join_netns
from testbed.kubelab.kubelet.config import KubeletConfig

PORT = 10250
MAX_BYTES = 10 * 2**20
FindLog = Callable[[str, str, str, bool], "Path | None"]  # (namespace, pod, container, previous) -> its log


def listen(config: KubeletConfig, port: int = PORT, host: str | None = None) -> dict[str, socket.socket]:
    """A listening socket on each node (on ``host``, default the node's address), made in the
    node's namespace; this process ends up in the last node's namespace (the caller joins its
    own next)."""
    sockets: dict[str, socket.socket] = {}
    for node in config.nodes:
        join_netns(f"/run/netns/{node.namespace}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or node.address, port))
        sock.listen(16)
        sock.setblocking(False)
        sockets[node.name] = sock
    return sockets


def _tls(config: KubeletConfig, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(config.ca))
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _app(find: FindLog) -> web.Application:
    async def logs(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        previous = request.query.get("previous") == "true"
        path = find(info["namespace"], info["pod"], info["container"], previous)
        if path is None or not path.exists():
            raise web.HTTPNotFound(text=f"no {'previous ' if previous else ''}log of {info['container']}\n")
        limit = min(int(request.query.get("limitBytes") or MAX_BYTES), MAX_BYTES)
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - limit))
            data = handle.read(limit)
        tail = request.query.get("tailLines")
        if tail is not None and tail.isdigit():
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :] if int(tail) else [])
        return web.Response(body=data, content_type="text/plain")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", logs)
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def serving(
    config: KubeletConfig, sockets: Mapping[str, socket.socket], finders: Mapping[str, FindLog]
) -> AsyncIterator[None]:
    runners: list[web.AppRunner] = []
    try:
        for node in config.nodes:
            runner = web.AppRunner(_app(finders[node.name]), access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.SockSite(runner, sockets[node.name], ssl_context=_tls(config, node.cert, node.key)).start()
        yield
    finally:
        for runner in runners:
            await runner.cleanup()
