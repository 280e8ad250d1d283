"""A scratch etcd cluster of N members on one host (loopback), started through the real
``etcd.member`` job: for tests and for the benchmark when no lab is at hand.

    async with local_cluster(3, data_dir, "run-1") as cluster:
        cluster.client_urls  # ("http://127.0.0.1:41234", ...)

Members are stopped one at a time on exit (bounded SIGTERM wait, then SIGKILL) and their data
directories removed, whatever happened inside the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext
from talbench.agents.probes.etcd.member import JOB, cleanup_name, url_host
from talbench.agents.probes.etcd.settings import port_is_reserved


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now, none of them a Talos port."""
    ports: list[int] = []
    held: list[socket.socket] = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        while len(ports) < count:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if not port_is_reserved(port) and port not in ports:
                ports.append(port)
            if len(held) > count + 100:
                raise RuntimeError("could not find free ports")
    finally:
        for sock in held:
            sock.close()
    return ports


@dataclass(frozen=True)
class LocalCluster:
    run_id: str
    names: tuple[str, ...]
    client_urls: tuple[str, ...]
    peer_urls: tuple[str, ...]
    start_results: tuple[dict[str, Any], ...]
    cleanups: Cleanups


@contextlib.asynccontextmanager
async def local_cluster(
    size: int,
    data_dir: Path,
    run_id: str,
    *,
    host: str = "127.0.0.1",
    heartbeat_interval: float = 0.1,
    election_timeout: float = 1.0,
    start_timeout: float = 30.0,
) -> AsyncIterator[LocalCluster]:
    cleanups = Cleanups()
    ports = free_ports(2 * size, host)
    names = tuple(f"m{i + 1}" for i in range(size))
    client_ports = ports[0::2]
    peer_ports = ports[1::2]
    initial = {name: f"http://{url_host(host)}:{peer}" for name, peer in zip(names, peer_ports, strict=True)}
    context = ProbeContext(
        node="local", run_id=run_id, data_dir=data_dir, listen_host=host, listen_port=0, cleanup=cleanups
    )
    try:
        starts = [
            JOB.run(
                JOB.parse(
                    {
                        "action": "start",
                        "name": name,
                        "host": host,
                        "client_port": client,
                        "peer_port": peer,
                        "initial_cluster": initial,
                        "cluster_token": run_id,
                        "heartbeat_interval": heartbeat_interval,
                        "election_timeout": election_timeout,
                        "start_timeout": start_timeout,
                    }
                ),
                context,
            )
            for name, client, peer in zip(names, client_ports, peer_ports, strict=True)
        ]
        outcomes = await asyncio.gather(*starts, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        results = [outcome for outcome in outcomes if isinstance(outcome, dict)]
        yield LocalCluster(
            run_id=run_id,
            names=names,
            client_urls=tuple(f"http://{url_host(host)}:{port}" for port in client_ports),
            peer_urls=tuple(initial[name] for name in names),
            start_results=tuple(results),
            cleanups=cleanups,
        )
    finally:
        for name in names:  # one at a time: stopping all at once can stall leadership transfer
            await asyncio.shield(cleanups.release(run_id, cleanup_name(name)))
