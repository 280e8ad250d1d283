"""The load generator's parent: starts worker processes (several cores, one event loop each),
starts them together, merges their results and decides whether the generator itself kept up.

A generator that was saturated (a worker busy for >= 90 % of a core, all of them together near
every core, or more than 1 % of open-loop sends going out over 50 ms after their scheduled
time, or one 250 ms late) measured itself, not etcd: the result says so in ``saturated`` and the coordinator
reports invalid.  (Latency is measured from the scheduled send time, so the generator's own
lateness would be charged to etcd.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from talbench.agents import cgroup
from talbench.agents.probes.etcd.histogram import LatencyHistogram

SCHEMA = 1
WORKER_MODULE = "talbench.agents.probes.etcd.worker"
MAX_WORKERS = 8
WORKER_CPU_SATURATED = 0.9  # of one core
TOTAL_CPU_SATURATED = 0.9  # of all cores
LATE_LIMIT = 0.05  # seconds: a tenth of the slowest-write limit (500 ms) ...
LATE_SHARE = 0.01  # ... for more than 1 % of all sends: the generator fell behind its schedule
LATE_MAX_LIMIT = 0.25  # seconds: half of it; a stall this long could fail the slowest write by itself
START_MARGIN = 0.3  # seconds between "go" and the first due request
OPEN_RATE_PER_WORKER = 4000.0  # writes/s per process: well within one worker's core (docs/measurements.md)


class LoadError(RuntimeError):
    """The load could not run (a worker failed to start or to reach etcd)."""


@dataclass(frozen=True)
class TlsFiles:
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class LoadSpec:
    endpoints: tuple[str, ...]  # client URLs, http://host:port or https://...
    prefix: str  # every key written starts with it
    mode: str  # "open" (rate-limited schedule) | "closed" (ceiling)
    clients: int
    duration: float
    rate: float = 0.0  # writes/s, open loop only
    key_size: int = 256
    value_size: int = 1024
    workers: int = 0  # 0: chosen from the cores and the rate
    request_timeout: float = 5.0
    tls: TlsFiles | None = None
    transport: str = "grpc"  # "grpc": etcd's client protocol; "gateway": its JSON gateway
    channels: int = 0  # gRPC channels per endpoint and worker; 0: the worker's default

    @property
    def planned(self) -> int:
        return round(self.rate * self.duration) if self.mode == "open" else 0


def usable_cores(cgroup_root: Path = Path("/")) -> int:
    """The cores this process may run on, and no more than its cgroup's CPU quota allows (a pod
    limit of 2 cores on a 64-core node is 2 workers, not 8): max(1, min(affinity, floor(quota)))."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cgroup.quota_cores(cgroup_root)
    if quota is not None and math.isfinite(quota):
        cores = max(1, min(cores, math.floor(quota)))
    return cores


def choose_workers(spec: LoadSpec, cores: int) -> int:
    """Explicit ``workers``, else: open loop one process per OPEN_RATE_PER_WORKER writes/s,
    closed loop one per core; never more than the cores, MAX_WORKERS or the clients."""
    if spec.workers:
        return max(1, min(spec.workers, MAX_WORKERS, spec.clients))
    wanted = max(1, math.ceil(spec.rate / OPEN_RATE_PER_WORKER)) if spec.mode == "open" else cores
    return max(1, min(wanted, cores, MAX_WORKERS, spec.clients))


def worker_configs(spec: LoadSpec, workers: int) -> list[dict[str, Any]]:
    configs = []
    offset = 0
    for index in range(workers):
        clients = spec.clients // workers + (1 if index < spec.clients % workers else 0)
        configs.append(
            {
                "endpoints": list(spec.endpoints),
                "tls": asdict(spec.tls) if spec.tls else None,
                "prefix": spec.prefix,
                "key_size": spec.key_size,
                "value_size": spec.value_size,
                "mode": spec.mode,
                "rate": spec.rate,
                "total": spec.planned,
                "clients": clients,
                "client_offset": offset,
                "index": index,
                "workers": workers,
                "duration": spec.duration,
                "request_timeout": spec.request_timeout,
                "transport": spec.transport,
                "channels": spec.channels,
                "seed": int.from_bytes(os.urandom(8), "big"),
            }
        )
        offset += clients
    return configs


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, config: dict[str, Any]) -> None:
        self.process = process
        self.config = config

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()

    async def receive(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise LoadError(f"load worker {self.config['index']} exited early: {await self._stderr_tail()}")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise LoadError(f"load worker {self.config['index']} wrote {line[:100]!r}") from exc
        if not isinstance(message, dict):
            raise LoadError(f"load worker {self.config['index']} wrote {line[:100]!r}")
        return message

    async def _stderr_tail(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            await asyncio.wait_for(self.process.wait(), 2.0)
            data = await asyncio.wait_for(self.process.stderr.read(), 2.0)
            lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
            if lines:
                return lines[-1][:300]
        return f"exit code {self.process.returncode}"

    async def stop(self) -> None:
        """Terminate (bounded), then kill; always reaped."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await asyncio.wait_for(self.process.wait(), 5.0)


async def _spawn(config: dict[str, Any]) -> _Worker:
    command = [sys.executable, "-m", WORKER_MODULE]
    setpriv = shutil.which("setpriv")
    if setpriv:  # a worker never outlives the process that started it
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=2**24,
    )
    worker = _Worker(process, config)
    await worker.send(config)
    return worker


async def run_load(spec: LoadSpec, *, start_timeout: float = 30.0) -> dict[str, Any]:
    """Run the load described by ``spec``; bounded by start_timeout + duration + slack.
    Raises LoadError when the workers cannot start or reach etcd."""
    if spec.mode not in ("open", "closed"):
        raise ValueError(f"mode must be open or closed, not {spec.mode!r}")
    if spec.mode == "open" and spec.rate <= 0:
        raise ValueError("an open-loop load needs a rate")
    cores = usable_cores()
    workers_n = choose_workers(spec, cores)
    configs = worker_configs(spec, workers_n)
    workers: list[_Worker] = []
    try:
        for config in configs:
            workers.append(await _spawn(config))
        answers = await asyncio.gather(*(w.receive(start_timeout) for w in workers))
        for answer in answers:
            if not answer.get("ready"):
                raise LoadError(str(answer.get("error") or "a load worker could not start"))
        t0 = time.monotonic() + START_MARGIN
        await asyncio.gather(*(w.send({"t0": t0}) for w in workers))
        results = await asyncio.gather(*(w.receive(spec.duration + spec.request_timeout + 30.0) for w in workers))
    except TimeoutError as exc:
        raise LoadError("a load worker did not answer in time") from exc
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    return merge_results(spec, results, cores)


def merge_results(spec: LoadSpec, results: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    latency = LatencyHistogram.merged(LatencyHistogram.from_wire(r["latency"]) for r in results)
    service = LatencyHistogram.merged(LatencyHistogram.from_wire(r["service"]) for r in results)
    late = LatencyHistogram.merged(LatencyHistogram.from_wire(r["late"]) for r in results)
    errors: dict[str, int] = {}
    samples: list[str] = []
    for result in results:
        for kind, count in result["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
        samples.extend(result["error_samples"])
    ok = sum(r["ok"] for r in results)
    sent = sum(r["sent"] for r in results)
    last_done = max((r["last_done"] for r in results if r["last_done"] is not None), default=None)
    elapsed = max(spec.duration, last_done or 0.0)
    wall = max(r["wall_seconds"] for r in results) if results else spec.duration
    cpu_seconds = [r["cpu_seconds"] for r in results]
    per_worker = [c / wall if wall > 0 else 0.0 for c in cpu_seconds]
    total_fraction = sum(cpu_seconds) / (wall * cores) if wall > 0 else 0.0
    saturated = saturation(per_worker, total_fraction, late, spec.mode, sent)
    return {
        "schema": SCHEMA,
        "mode": spec.mode,
        "rate": spec.rate,
        "clients": spec.clients,
        "duration": spec.duration,
        "key_size": spec.key_size,
        "value_size": spec.value_size,
        "endpoints": list(spec.endpoints),
        "workers": len(results),
        "requests": {
            "planned": spec.planned,
            "sent": sent,
            "ok": ok,
            "unsent": max(0, spec.planned - sent) if spec.mode == "open" else 0,
            "errors": errors,
        },
        "error_samples": samples[:5],
        "elapsed": elapsed,
        "achieved_rate": ok / elapsed if elapsed > 0 else 0.0,
        "latency": latency.to_wire(),
        "service": service.to_wire(),
        "late": late.to_wire(),
        "cpu": {
            "cores": cores,
            "seconds": sum(cpu_seconds),
            "wall": wall,
            "per_worker": per_worker,
            "total_fraction": total_fraction,
        },
        "saturated": saturated,
    }


def saturation(
    per_worker: list[float], total_fraction: float, late: LatencyHistogram, mode: str, sent: int
) -> str | None:
    """Why the generator could not keep up, or None.  Lateness is only recorded for sends whose
    client was free before the scheduled time (a client kept busy by a slow etcd is etcd's
    latency, not the generator's lag)."""
    busiest = max(per_worker, default=0.0)
    if busiest >= WORKER_CPU_SATURATED:
        return f"a load-generator worker was busy {busiest * 100:.0f} % of a core"
    if total_fraction >= TOTAL_CPU_SATURATED:
        return f"the load generator used {total_fraction * 100:.0f} % of all cores"
    if mode == "open" and sent:
        behind = late.count_above(LATE_LIMIT)
        if behind > LATE_SHARE * sent:
            return (
                f"the load generator fell behind its schedule ({behind} of {sent} writes went out more than "
                f"{LATE_LIMIT * 1e3:.0f} ms late)"
            )
        worst = late.max()
        if worst is not None and worst > LATE_MAX_LIMIT:
            return f"the load generator stalled {worst * 1e3:.0f} ms once (a write sent that late is charged to etcd)"
    return None
