"""KubePrism on the lab's nodes: Talos' node-local endpoint of the Kubernetes API,
``127.0.0.1:7445`` in every node's namespace, relayed to the API server (TLS stays end to end:
bytes are relayed, not read), so the kubeprism check is judged for real on the Kubernetes lab.

The lab kubelet process serves it (its listening sockets are made in each node's namespace by
testbed/kubelab/kubelet/server.py ``listen``; it connects to the API server from its own namespace,
the control plane's).  Every connection attempt is bounded; a relay ends with either side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping

PORT = 7445
HOST = "127.0.0.1"
CONNECT_TIMEOUT = 5.0
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@contextlib.asynccontextmanager
async def serving(sockets: Mapping[str, socket.socket], api_host: str, api_port: int) -> AsyncIterator[None]:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(api_host, api_port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    servers = [await asyncio.start_server(relay, sock=sock) for sock in sockets.values()]
    try:
        yield
    finally:
        for server in servers:
            server.close()
