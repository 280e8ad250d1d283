"""Benchmark: the load generator's CPU per write, its gateway connection next to aiohttp's
ClientSession doing the same writes.

    .venv/bin/python tests/benchmarks/bench_etcd_client.py [--rounds 4] [--seconds 5] [--clients 200]

A stand-in gateway (a separate process on 127.0.0.1 answering every POST with a fixed
etcd-sized JSON answer, so that only the client's cost is measured) takes closed-loop writes of
the etcd.load body (256-byte keys, 1 KiB values) from one client process over ``--clients``
keep-alive connections.  Each round measures both clients in turn (the order alternates) and
reports user+system CPU seconds per completed write.  Why this matters: on a control plane the
generator's CPU is taken from the etcd member under test (see bench_etcd.py).  Writes
results/bench/etcd_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_output import write_record  # this script's sibling (run as a file, its directory is on sys.path)

ANSWER_BODY = b'{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"5","raft_term":"2"}}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: application/grpc\r\n"
    b"Content-Length: " + str(len(ANSWER_BODY)).encode() + b"\r\n\r\n" + ANSWER_BODY
)


# ---- the stand-in gateway (its own process) ---------------------------------------------------


class _Gateway(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(ANSWER)


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Gateway, "127.0.0.1", port)
        async with server:
            await asyncio.sleep(600)  # bounded: the benchmark kills it long before

    _run(main())


# ---- the two clients -------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    from talbench.agents.etcdload.worker import _loop_factory

    factory = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _config(port: int, clients: int, seconds: float) -> dict[str, Any]:
    return {
        "endpoints": [f"http://127.0.0.1:{port}"],
        "prefix": "/talbench/bench-client/",
        "key_size": 256,
        "value_size": 1024,
        "mode": "closed",
        "rate": 0,
        "total": 0,
        "clients": clients,
        "client_offset": 0,
        "index": 0,
        "workers": 1,
        "duration": seconds,
        "request_timeout": 5.0,
        "seed": 1,
    }


async def _gateway_connection(port: int, clients: int, seconds: float) -> tuple[int, float]:
    """talbench's worker as it runs: its connections, its closed loop."""
    import gc

    from talbench.agents.etcdload.worker import GC_YOUNG_THRESHOLD, Worker

    worker = Worker(_config(port, clients, seconds))
    try:
        await worker.warm_up()
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 1000)
        start = _cpu()
        await worker.closed_loop(time.monotonic())
        return worker.ok, _cpu() - start
    finally:
        worker.close()


async def _client_session(port: int, clients: int, seconds: float) -> tuple[int, float]:
    """The same writes through aiohttp.ClientSession, tuned as far as its public API goes: one
    keep-alive connection per client, no cookie jar, no per-request timer, a ready payload."""
    import gc

    import aiohttp
    from aiohttp import payload

    from talbench.agents.etcdload.worker import GC_YOUNG_THRESHOLD, Worker

    body_source = Worker(_config(port, 1, seconds))
    body_source.close()
    url = f"http://127.0.0.1:{port}/v3/kv/put"
    connector = aiohttp.TCPConnector(limit=clients + 4, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
    ) as session:
        ok = 0

        async def one() -> bool:
            data = payload.BytesPayload(body_source.body(), content_type="application/json")
            async with session.post(url, data=data) as response:
                await response.read()
                return response.status == 200

        await asyncio.gather(*(one() for _ in range(clients)))  # open the connections
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal ok
            while time.monotonic() < end:
                if await one():  # (not ``ok += await one()``: that reads ok before the await)
                    ok += 1

        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 1000)
        start = _cpu()
        await asyncio.gather(*(client() for _ in range(clients)))
        return ok, _cpu() - start


CLIENTS = {"gateway-connection": _gateway_connection, "client-session": _client_session}


def measure(kind: str, port: int, clients: int, seconds: float) -> dict[str, Any]:
    """One client in a fresh process, so that neither inherits the other's heap."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            kind,
            "--port",
            str(port),
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/bench/etcd_client.json"))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.measure:
        ok, cpu = _run(CLIENTS[args.measure](args.port, args.clients, args.seconds))
        print(json.dumps({"writes": ok, "cpu_seconds": cpu, "cpu_us_per_write": cpu / max(ok, 1) * 1e6}))
        return 0

    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the stand-in gateway did not start") from None
                time.sleep(0.1)
        for index in range(args.rounds):
            order = list(CLIENTS) if index % 2 == 0 else list(reversed(CLIENTS))
            row = {kind: measure(kind, port, args.clients, args.seconds) for kind in order}
            rows.append(row)
            print(
                f"round {index + 1}: "
                + ", ".join(
                    f"{k} {row[k]['cpu_us_per_write']:.1f} us/write ({row[k]['writes']} writes)" for k in CLIENTS
                ),
                flush=True,
            )
    finally:
        server.kill()
        server.wait(timeout=10)
    summary = {
        kind: {
            "median_us": statistics.median(r[kind]["cpu_us_per_write"] for r in rows),
            "min_us": min(r[kind]["cpu_us_per_write"] for r in rows),
        }
        for kind in CLIENTS
    }
    for kind, figures in summary.items():
        print(f"{kind:>20}: median {figures['median_us']:.1f} us of CPU per write, lowest {figures['min_us']:.1f}")
    measured = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": rows,
        "summary": summary,
    }
    write_record(args.out, "talbench/bench-etcd-client/v1", measured, with_kernel=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
