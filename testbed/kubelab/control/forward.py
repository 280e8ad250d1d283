"""The way into the Kubernetes lab from the root namespace: a TCP forwarder that accepts on a
loopback socket of the root namespace and connects to the API server inside the lab.

    python -m testbed.kubelab.control.forward --listen-fd FD --netns /run/netns/NAME --to ADDR:PORT

The parent binds the listening socket (127.0.0.1, a port the kernel picks) in the root namespace
and hands it over as ``FD``; this process then joins the lab namespace (setns), so that every
connection it makes is made there, and relays bytes both ways (TLS stays end to end: the
forwarder sees only ciphertext).  Nothing of the lab becomes routable: the root namespace gains
one loopback listener and no route, address or interface.  Having joined the lab namespace, the
forwarder is one of its processes, so ``lab down`` (and the leftover sweep) ends it with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 5.0
CHUNK = 65536


def join_netns(path: str) -> None:
    """setns(2) into the network namespace at ``path`` (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _relay(host: str, port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        server_r, server_w = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError):
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
    finally:
        for w in (client_w, server_w):
            w.close()


async def serve(listener: socket.socket, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(lambda r, w: _relay(host, port, r, w), sock=listener)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kube_forward")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--netns", required=True)
    parser.add_argument("--to", required=True, metavar="ADDR:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    listener = socket.socket(fileno=args.listen_fd)
    listener.set_inheritable(False)
    join_netns(args.netns)
    sys.stderr.write(f"forwarding {listener.getsockname()} to {host}:{port} in {args.netns}\n")
    asyncio.run(serve(listener, host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
