"""One load-generator worker process: ``python -m talbench.agents.probes.etcd.worker``.

Protocol on stdin/stdout, one JSON object per line:
    parent -> worker   the WorkerConfig (see generator.worker_config)
    worker -> parent   {"ready": true} once its keep-alive connections are open
                       (or {"ready": false, "error": "..."})
    parent -> worker   {"t0": <time.monotonic() of the common start>}
    worker -> parent   the result: counts, histograms, CPU, errors
End of stdin before the result means the parent is gone: the worker stops at once.

Open loop: request j (of the whole run) is due at t0 + j / rate; this worker sends the
requests j = index, index + workers, ...  Its clients take the next due request when free, sleep
until it is due and send it; latency is measured from the due time (so a slow etcd that keeps
every client busy shows up as latency, not as silently fewer requests: no coordinated omission),
service time from the actual send.  How late the sleeps wake up is recorded separately: that is
the generator's own lag.  Closed loop ("ceiling"): every client sends the next write as soon as
the previous one answered, until the duration is over.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import random
import resource
import ssl
import sys
import time
from typing import Any

from yarl import URL

from talbench.agents.probes.etcd.connection import ConnectionFailed, GatewayConnection, RequestTimeout
from talbench.agents.probes.etcd.grpc_put import GrpcPut, GrpcTls, RemoteError
from talbench.agents.probes.etcd.histogram import LatencyHistogram

PUT_PATH = "/v3/kv/put"
RANGE_PATH = "/v3/kv/range"
KEPT_ERRORS = 5
RECONNECT_PAUSE = 0.05  # seconds a client waits after a failed connection: a refused port is no spin
# Young-generation GC threshold during the run: every write allocates a few container objects
# (futures, the answer's payload stream), and at the default (700) the collector runs every few
# dozen writes, and the client's CPU is taken from the etcd under test.  A larger threshold saves a
# little (within noise but not against it: docs/measurements.md); cycles are still collected, just
# in larger batches.
GC_YOUNG_THRESHOLD = 100_000
WARMUP_TIMEOUT = 15.0
DEFAULT_CHANNELS = 2  # gRPC channels per endpoint and worker (benchmark put's --conns, over the workers)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _allow_open_files(needed: int) -> None:
    """One socket per client: raise the soft open-files limit (often 1024) towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _ssl_context(tls: dict[str, Any] | None) -> ssl.SSLContext:
    """For https endpoints: verified against the given CA (else the system's), with the client
    certificate when one is given."""
    tls = tls or {}
    context = ssl.create_default_context(cafile=tls.get("cacert") or None)
    if tls.get("cert"):
        context.load_cert_chain(tls["cert"], tls.get("key") or None)
    return context


class GatewayPut:
    """The writes over etcd's JSON gateway (``transport: gateway``): one keep-alive HTTP/1.1
    connection per client, every body framed alike (agents/probes/etcd/connection.py)."""

    def __init__(self, config: dict[str, Any], value: bytes) -> None:
        endpoints = [URL(url.rstrip("/")) for url in config["endpoints"]]
        tls_context = _ssl_context(config.get("tls")) if any(url.scheme == "https" for url in endpoints) else None
        self.body_head = b'{"key":"'
        self.body_tail = b'","value":"' + base64.b64encode(value) + b'"}'
        key_length = len(base64.b64encode(bytes(int(config["key_size"]))))
        first = int(config["client_offset"])
        self.connections = [
            GatewayConnection(
                endpoints[(first + i) % len(endpoints)],
                PUT_PATH,
                len(self.body_head) + key_length + len(self.body_tail),
                timeout=float(config["request_timeout"]),
                ssl_context=tls_context,
            )
            for i in range(int(config["clients"]))
        ]

    async def put(self, client: int, key: bytes, value: bytes) -> None:
        answer = await self.connections[client].post(self.body_head + base64.b64encode(key) + self.body_tail)
        if answer.status != 200:
            raise RemoteError(f"http-{answer.status}", answer.body.decode("utf-8", "replace"))

    async def warm_up(self, prefix: bytes) -> None:
        probe = json.dumps(
            {"key": base64.b64encode(prefix).decode(), "count_only": True, "serializable": True}
        ).encode()

        async def one(connection: GatewayConnection) -> None:
            answer = await connection.post_to(RANGE_PATH, probe)
            if answer.status != 200:
                raise RuntimeError(f"{connection.url}: HTTP {answer.status}")

        await asyncio.gather(*(one(c) for c in self.connections))

    async def close(self) -> None:
        for connection in self.connections:
            connection.close()


def transport_of(config: dict[str, Any], value: bytes) -> GatewayPut | GrpcPut:
    if config.get("transport", "grpc") == "gateway":
        return GatewayPut(config, value)
    tls = config.get("tls") or {}
    return GrpcPut(
        config["endpoints"],
        clients=int(config["clients"]),
        channels=int(config.get("channels") or DEFAULT_CHANNELS),
        first=int(config["client_offset"]),
        timeout=float(config["request_timeout"]),
        tls=GrpcTls(tls.get("cacert"), tls.get("cert"), tls.get("key")) if tls else None,
    )


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.prefix = config["prefix"].encode("utf-8")
        self.random_len = int(config["key_size"]) - len(self.prefix)
        if self.random_len < 8:
            raise ValueError("key_size leaves fewer than 8 random bytes after the prefix")
        self.rng = random.Random(config.get("seed"))
        self.value = self.rng.randbytes(int(config["value_size"]))
        self.latency = LatencyHistogram()
        self.service = LatencyHistogram()
        self.late = LatencyHistogram()
        self.ok = 0
        self.sent = 0
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.first_send: float | None = None
        self.last_done: float | None = None
        self.clients = int(config["clients"])
        self.transport = transport_of(config, self.value)

    def key(self) -> bytes:
        return self.prefix + self.rng.randbytes(self.random_len)

    def _error(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < KEPT_ERRORS:
            self.error_samples.append(f"{kind}: {message}"[:300])

    async def put(self, client: int, key: bytes) -> bool:
        try:
            await self.transport.put(client, key, self.value)
        except RequestTimeout as exc:
            self._error("timeout", str(exc))
            return False
        except ConnectionFailed as exc:
            self._error("connection", str(exc))
            await asyncio.sleep(RECONNECT_PAUSE)
            return False
        except RemoteError as exc:
            self._error(exc.kind, str(exc))
            return False
        return True

    async def write(self, client: int, due: float | None) -> None:
        """One write, counted and timed: latency from ``due`` (the open loop's schedule) or, in
        the closed loop (None), from the send; service time always from the send."""
        key = self.key()
        sent = time.monotonic()
        if self.first_send is None:
            self.first_send = sent
        self.sent += 1
        ok = await self.put(client, key)
        done = self.last_done = time.monotonic()
        if ok:
            self.ok += 1
            self.latency.record(done - (sent if due is None else due))
            self.service.record(done - sent)

    async def close(self) -> None:
        await self.transport.close()

    async def warm_up(self) -> None:
        """Open every client's connection (channel) and ask each member one serializable
        count-only read of the prefix over it (no write, no raft round): the members answer
        before t0."""
        await asyncio.wait_for(self.transport.warm_up(self.prefix), WARMUP_TIMEOUT)

    # ---- the two loops ---------------------------------------------------------------------

    async def open_loop(self, t0: float) -> None:
        config = self.config
        workers, index, total = int(config["workers"]), int(config["index"]), int(config["total"])
        rate = float(config["rate"])
        end = t0 + float(config["duration"])
        state = {"next": index}
        clock = time.monotonic

        async def client(slot: int) -> None:
            while True:
                j = state["next"]
                if j >= total:
                    return
                state["next"] = j + workers
                due = t0 + j / rate
                now = clock()
                if now < due:
                    await asyncio.sleep(due - now)
                    self.late.record(clock() - due)
                elif now > end:
                    return  # the schedule is over: what was never sent counts as unsent
                await self.write(slot, due)

        await asyncio.gather(*(client(c) for c in range(self.clients)))

    async def closed_loop(self, t0: float) -> None:
        config = self.config
        end = t0 + float(config["duration"])
        clock = time.monotonic

        async def client(slot: int) -> None:
            now = clock()
            if now < t0:
                await asyncio.sleep(t0 - now)
            while clock() < end:
                await self.write(slot, None)

        await asyncio.gather(*(client(c) for c in range(self.clients)))

    def result(self, t0: float, cpu_start: float, cpu_end: float, wall_end: float) -> dict[str, Any]:
        return {
            "index": self.config["index"],
            "ok": self.ok,
            "sent": self.sent,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "latency": self.latency.to_wire(),
            "service": self.service.to_wire(),
            "late": self.late.to_wire(),
            "first_send": None if self.first_send is None else self.first_send - t0,
            "last_done": None if self.last_done is None else self.last_done - t0,
            "cpu_seconds": cpu_end - cpu_start,
            "wall_seconds": wall_end - t0,
        }


async def _read_line(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    message: dict[str, Any] = json.loads(line)
    return message


def _write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def amain() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = await _read_line(reader)
    if config is None:
        return 2
    _allow_open_files(int(config["clients"]) + 64)
    worker = Worker(config)
    try:
        try:
            await worker.warm_up()
        except Exception as exc:  # reported to the parent, which fails the whole load
            _write({"ready": False, "error": f"warm-up failed: {type(exc).__name__}: {exc}"[:300]})
            return 1
        gc.collect()
        gc.freeze()  # what exists now (connections, buffers) lives for the whole run
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 1000)
        _write({"ready": True})
        go = await _read_line(reader)
        if go is None:
            return 1
        t0 = float(go["t0"])
        # The parent vanishing (stdin closed) stops the run at once.
        run = asyncio.ensure_future(worker.open_loop(t0) if config["mode"] == "open" else worker.closed_loop(t0))
        watch = asyncio.ensure_future(reader.read())
        cpu_start = _cpu_seconds()
        drain = float(config["request_timeout"]) + 1.0
        deadline = t0 + float(config["duration"]) + drain - time.monotonic()
        done, _ = await asyncio.wait({run, watch}, timeout=max(0.0, deadline), return_when=asyncio.FIRST_COMPLETED)
        if run not in done:
            run.cancel()
            if watch in done:
                return 1
        watch.cancel()
        await asyncio.gather(run, watch, return_exceptions=True)
        _write(worker.result(t0, cpu_start, _cpu_seconds(), time.monotonic()))
        return 0
    finally:
        await worker.close()


def _loop_factory() -> Any:
    """uvloop's event loop when it is installed (less of the client's CPU per write than
    asyncio's, and on a shared node that CPU is the etcd under test's: docs/measurements.md),
    else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> int:
    factory = _loop_factory()
    if factory is None:
        return asyncio.run(amain())
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(amain())


if __name__ == "__main__":
    raise SystemExit(main())
