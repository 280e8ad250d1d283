"""Benchmark: the etcd load generator's CPU per write, over each transport it has (``transport:
grpc``, the default, and ``transport: gateway``), next to aiohttp's ClientSession doing the
gateway's writes.

    .venv/bin/python benchmarks/bench_etcd_client.py [--rounds 6] [--seconds 5] [--clients 200]

One real etcd member (the etcd ``make etcd`` installs, or $TALBENCH_ETCD), started by this script
through the etcd.member job (its child; 127.0.0.1 only, a temporary data directory under
/var/tmp) and stopped at the end, takes closed-loop writes of the etcd.load body (256-byte keys,
1 KiB values) from one client process with ``--clients`` concurrent clients:
- grpc: talbench's worker as it runs by default (grpcio, hand-encoded PutRequests, 2 HTTP/2
  channels shared by the clients: agents/probes/etcd/grpc_put.py);
- gateway-connection: the worker with ``transport: gateway`` (one keep-alive HTTP/1.1
  connection per client on aiohttp's protocol: agents/probes/etcd/connection.py);
- client-session: the same JSON writes through aiohttp.ClientSession, tuned.
Each round measures every client in a fresh process, in turn (the order rotates from round to
round), and reports the client process's user+system CPU seconds (all its threads: grpcio's
too) per completed write, and the member's CPU per write over the same window.  Why this
matters: on a control plane the generator's CPU is taken from the etcd member under test (see
bench_etcd.py).  Writes results/bench/etcd_client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from bench_output import write_record  # this script's sibling (run as a file, its directory is on sys.path)

from talbench.agents.probes.etcd.local_cluster import local_cluster

PREFIX = "/talbench/bench-client/"
FIGURES = ("cpu_us_per_write", "member_cpu_us_per_write", "writes_per_s")

# ---- one client, measured in its own process ---------------------------------------------------


def _run(coro: Any) -> Any:
    from talbench.agents.probes.etcd.worker import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _member_cpu(pid: int) -> float:
    """The etcd member's user+system CPU seconds so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Window:
    """CPU of this process and of the member, and wall time, from start() to stop()."""

    def __init__(self, member_pid: int) -> None:
        self.member_pid = member_pid

    def start(self) -> None:
        gc.collect()
        gc.freeze()  # as the worker does: what exists now lives for the whole run
        from talbench.agents.probes.etcd.worker import GC_YOUNG_THRESHOLD

        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 1000)
        self.wall, self.cpu, self.member = time.monotonic(), _cpu(), _member_cpu(self.member_pid)

    def stop(self, writes: int, errors: dict[str, int]) -> dict[str, Any]:
        cpu, member, wall = _cpu() - self.cpu, _member_cpu(self.member_pid) - self.member, time.monotonic() - self.wall
        return {
            "writes": writes,
            "errors": errors,
            "cpu_seconds": cpu,
            "member_cpu_seconds": member,
            "wall_seconds": wall,
            "cpu_us_per_write": cpu / max(writes, 1) * 1e6,
            "member_cpu_us_per_write": member / max(writes, 1) * 1e6,
            "writes_per_s": writes / wall,
        }


def _config(url: str, transport: str, clients: int, seconds: float) -> dict[str, Any]:
    """An etcd.load worker's configuration (generator.worker_configs' fields), one worker."""
    return {
        "endpoints": [url],
        "prefix": PREFIX,
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
        "transport": transport,
        "channels": 0,  # the worker's default (2 per endpoint)
    }


async def _worker(transport: str, url: str, window: Window, clients: int, seconds: float) -> dict[str, Any]:
    """talbench's worker as it runs: its transport, its warm-up, its closed loop."""
    from talbench.agents.probes.etcd.worker import Worker, _allow_open_files

    _allow_open_files(clients + 64)
    worker = Worker(_config(url, transport, clients, seconds))
    try:
        await worker.warm_up()
        window.start()
        await worker.closed_loop(time.monotonic())
        return window.stop(worker.ok, worker.errors)
    finally:
        await worker.close()


async def _client_session(url: str, window: Window, clients: int, seconds: float) -> dict[str, Any]:
    """The gateway's writes (same bodies: the worker's keys and value) through
    aiohttp.ClientSession, tuned as far as its public API goes: one keep-alive connection per
    client, no cookie jar, no per-request timer, a ready payload."""
    import aiohttp
    from aiohttp import payload

    from talbench.agents.probes.etcd.worker import PUT_PATH, GatewayPut, Worker, _allow_open_files

    _allow_open_files(clients + 64)
    source = Worker(_config(url, "gateway", 1, seconds))  # keys and body framing; never connects
    await source.close()
    assert isinstance(source.transport, GatewayPut)
    head, tail = source.transport.body_head, source.transport.body_tail
    put_url = f"{url}{PUT_PATH}"
    connector = aiohttp.TCPConnector(limit=clients + 4, limit_per_host=0)
    ok, errors = 0, dict[str, int]()
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
    ) as session:

        async def one() -> bool:
            body = head + base64.b64encode(source.key()) + tail
            data = payload.BytesPayload(body, content_type="application/json")
            async with session.post(put_url, data=data) as response:
                await response.read()
                if response.status != 200:
                    errors[f"http-{response.status}"] = errors.get(f"http-{response.status}", 0) + 1
                return response.status == 200

        await asyncio.gather(*(one() for _ in range(clients)))  # open the connections
        errors.clear()
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal ok
            while time.monotonic() < end:
                if await one():  # (not ``ok += await one()``: that reads ok before the await)
                    ok += 1

        window.start()
        await asyncio.gather(*(client() for _ in range(clients)))
        return window.stop(ok, errors)


CLIENTS = ("grpc", "gateway-connection", "client-session")


def measure_here(kind: str, url: str, member_pid: int, clients: int, seconds: float) -> dict[str, Any]:
    window = Window(member_pid)
    if kind == "client-session":
        coro = _client_session(url, window, clients, seconds)
    else:
        coro = _worker("grpc" if kind == "grpc" else "gateway", url, window, clients, seconds)
    result: dict[str, Any] = _run(coro)
    return result


def measure(kind: str, url: str, member_pid: int, clients: int, seconds: float) -> dict[str, Any]:
    """One client in a fresh process (this script, a child), so that none inherits another's heap."""
    argv = ["--measure", kind, "--url", url, "--member-pid", str(member_pid)]
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--clients", str(clients), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed: {done.stderr.strip()[-600:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["writes"] == 0 or result["errors"]:
        raise RuntimeError(f"{kind}: {result['writes']} writes, errors {result['errors']}")
    return result


# ---- the rounds, on one member -----------------------------------------------------------------


def order_of(index: int) -> list[str]:
    """Round ``index``'s order: rotated, so that over 3 rounds each client goes first once."""
    shift = index % len(CLIENTS)
    return [*CLIENTS[shift:], *CLIENTS[:shift]]


async def rounds(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-etcd-client-", dir="/var/tmp") as data:
        async with local_cluster(1, Path(data), "bench-client") as cluster:  # stopped (and removed) on exit
            started = cluster.start_results[0]
            url, pid = cluster.client_urls[0], int(started["pid"])
            member = {"version": started["version"], "client_url": url, "load_average_before": os.getloadavg()}
            print(f"etcd {started['version']} on {url} (pid {pid})", flush=True)
            for index in range(args.rounds):
                row: dict[str, Any] = {"order": order_of(index)}
                for kind in order_of(index):
                    row[kind] = await asyncio.to_thread(measure, kind, url, pid, args.clients, args.seconds)
                rows.append(row)
                print(
                    f"round {index + 1}: "
                    + ", ".join(
                        f"{k} {row[k]['cpu_us_per_write']:.1f} us/write "
                        f"(member {row[k]['member_cpu_us_per_write']:.0f} us, {row[k]['writes_per_s']:.0f} writes/s)"
                        for k in CLIENTS
                    ),
                    flush=True,
                )
    return member, rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/bench/etcd_client.json"))
    parser.add_argument("--measure", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--member-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_here(args.measure, args.url, args.member_pid, args.clients, args.seconds)))
        return 0
    if args.rounds < 1 or args.seconds <= 0 or args.clients < 1:
        parser.error("--rounds and --clients must be at least 1, --seconds above 0")

    member, rows = asyncio.run(rounds(args))
    summary = {
        kind: {
            **{f"median_{f}": statistics.median(r[kind][f] for r in rows) for f in FIGURES},
            "min_cpu_us_per_write": min(r[kind]["cpu_us_per_write"] for r in rows),
            "max_cpu_us_per_write": max(r[kind]["cpu_us_per_write"] for r in rows),
        }
        for kind in CLIENTS
    }
    for kind, s in summary.items():
        print(
            f"{kind:>20}: median {s['median_cpu_us_per_write']:.1f} us of client CPU per write "
            f"({s['min_cpu_us_per_write']:.1f}-{s['max_cpu_us_per_write']:.1f}); "
            f"member {s['median_member_cpu_us_per_write']:.0f} us per write; {s['median_writes_per_s']:.0f} writes/s"
        )
    measured = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": os.getloadavg(),
        "etcd": member,
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": rows,
        "summary": summary,
    }
    write_record(args.out, "talbench/bench-etcd-client/v2", measured, with_kernel=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
