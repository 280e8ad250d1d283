"""The wireguard probe's throughput job (``wireguard.iperf``): TCP throughput between two agents
with iperf3 (JSON output, driven by ``sh``).

One agent runs a one-off server (``role: server``) bound to the address it serves, on a per-run
port; the other runs the client (``role: client``) for ``duration`` seconds.  Both jobs are
bounded: the server gives up when no client came within ``accept_within`` and is killed in
``finally`` (and registered in the run's cleanup registry, so DELETE /v1/runs/{run_id} and agent
shutdown remove it); the client retries only "connection refused" (the server is not listening
yet) until ``connect_within``.

Each side also measures the whole machine's CPU (psutil) during the transfer: with WireGuard the
encryption work is done outside iperf3 (wireguard-go or kernel threads), so iperf3's own
``cpu_utilization_percent`` (kept too) does not show it.

The job is declared by the wireguard probe (agents/probes/wireguard/probe.py); this module holds its
parameters, its time limit and its run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import psutil
import sh
from pydantic import AfterValidator, ConfigDict, Field, RootModel

from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import ProbeContext, ProbeUnavailable
from talbench.agents.procs import kill_and_reap, set_parent_death_signal

IPERF3 = "iperf3"
MISSING_HINT = "iperf3 not found: apt-get install iperf3"
CONNECT_RETRY_INTERVAL = 0.2
SERVER_POLL_INTERVAL = 0.05
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PORT_MIN, PORT_MAX = 1024, 65535  # the servers and tunnels a run opens use unprivileged ports


# ---------------------------------------------------------------------------------------------
# parameters


def _normalised_address(text: str) -> str:
    return str(ipaddress.ip_address(text))


# An IPv4 or IPv6 address written as text (no host names: the path must be the one asked for).
IpAddress = Annotated[str, AfterValidator(_normalised_address)]


class IperfSettings(Params):
    """The transfer, as the scenario's ``probes.wireguard`` block sets it (both paths alike)."""

    duration: float = param(10.0, ge=1.0, le=60.0, unit=SECONDS, help="iperf3 -t: transfer time per path")
    omit: int = param(1, ge=0, le=10, help="iperf3 -O: whole seconds of TCP slow start left out of the figures")
    streams: int = param(1, ge=1, le=16, help="iperf3 -P: parallel TCP streams")


class IperfSide(IperfSettings):
    """What both sides of one transfer are given: the settings and the server's port."""

    port: int = param(ge=PORT_MIN, le=PORT_MAX, help="the server's TCP port")


class IperfServer(IperfSide):
    role: Literal["server"] = param(help="a one-off iperf3 server: returns after one client's transfer")
    bind: IpAddress = param(max_length=64, help="the address it listens on (this node's, or its tunnel address)")
    accept_within: float = param(20.0, ge=1.0, le=120.0, unit=SECONDS, help="give up when no client came by then")


class IperfClient(IperfSide):
    role: Literal["client"] = param(help="the transfer, from this node to the server")
    host: IpAddress = param(max_length=64, help="the server's address")
    connect_within: float = param(10.0, ge=0.0, le=60.0, unit=SECONDS, help="retry a refused connection until then")
    bind: IpAddress | None = param(None, max_length=64, help="the source address (default: the kernel's choice)")


class IperfParams(RootModel[Annotated[IperfServer | IperfClient, Field(discriminator="role")]]):
    """One side of one transfer (``role``): the settings plus what the driver fills in."""

    model_config = ConfigDict(frozen=True)


def time_limit(params: IperfParams) -> float:
    side = params.root
    if isinstance(side, IperfServer):
        return side.accept_within + side.duration + 20.0
    return side.connect_within + side.duration + side.omit + 25.0


# ---------------------------------------------------------------------------------------------
# CPU of the whole machine over a window


@dataclass(frozen=True)
class CpuMark:
    wall: float
    busy: float  # CPU seconds busy, all CPUs
    total: float  # CPU seconds, all CPUs


def cpu_mark() -> CpuMark:
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return CpuMark(time.monotonic(), total - idle, total)


def cpu_between(a: CpuMark, b: CpuMark) -> dict[str, Any]:
    """The machine's CPU use between two marks: percent of all CPUs and busy cores."""
    wall = max(b.wall - a.wall, 1e-9)
    total = b.total - a.total
    share = (b.busy - a.busy) / total if total > 0 else 0.0
    cpus = psutil.cpu_count(logical=True) or 1
    return {
        "system_percent": round(100.0 * share, 2),
        "busy_cores": round(share * cpus, 3),
        "cpus": cpus,
        "wall_s": round(wall, 3),
    }


def boot_id() -> str | None:
    """Identifies the machine (kernel boot): two agents with the same boot id share CPUs."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# iperf3 JSON


def summarize_client(report: Mapping[str, Any]) -> dict[str, Any]:
    """The figures kept from an iperf3 client's JSON report (raw per-interval rates included)."""
    if report.get("error"):
        raise RuntimeError(f"iperf3: {report['error']}")
    end = report.get("end") or {}
    sent = end.get("sum_sent") or {}
    received = end.get("sum_received") or {}
    if not sent or not received:
        raise RuntimeError("iperf3 report without end.sum_sent/sum_received")
    intervals = [
        round(float((i.get("sum") or {}).get("bits_per_second", 0.0)), 1)
        for i in report.get("intervals") or ()
        if not (i.get("sum") or {}).get("omitted")
    ]
    cpu = end.get("cpu_utilization_percent") or {}
    return {
        "sent_bps": float(sent.get("bits_per_second", 0.0)),
        "received_bps": float(received.get("bits_per_second", 0.0)),
        "bytes_sent": int(sent.get("bytes", 0)),
        "bytes_received": int(received.get("bytes", 0)),
        "seconds": float(received.get("seconds") or sent.get("seconds") or 0.0),
        "retransmits": int(sent["retransmits"]) if "retransmits" in sent else None,
        "intervals_bps": intervals,
        "iperf_cpu_percent": {
            "client": cpu.get("host_total"),
            "server": cpu.get("remote_total"),
        },
        "version": (report.get("start") or {}).get("version"),
    }


def summarize_server(report: Mapping[str, Any]) -> dict[str, Any]:
    if report.get("error"):
        raise RuntimeError(f"iperf3 server: {report['error']}")
    end = report.get("end") or {}
    received = end.get("sum_received") or {}
    cpu = end.get("cpu_utilization_percent") or {}
    return {
        "received_bps": float(received.get("bits_per_second", 0.0)),
        "bytes_received": int(received.get("bytes", 0)),
        "iperf_cpu_percent": cpu.get("host_total"),
    }


def _parse_json(text: str) -> dict[str, Any]:
    # iperf3 -J prints one JSON document; anything before it (warnings) is skipped.
    start = text.find("{")
    if start < 0:
        raise RuntimeError(f"iperf3 printed no JSON: {text.strip()[:200]!r}")
    try:
        doc = json.loads(text[start:])
    except ValueError as exc:
        raise RuntimeError(f"iperf3 printed malformed JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RuntimeError("iperf3 printed JSON that is not an object")
    return doc


async def route_of(host: str, *, mark: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Which device and source address the kernel uses towards ``host`` (``ip -j route get``):
    tells which path a figure took (plain, kubespan, a test tunnel)."""
    args = ["-j", "route", "get", host] + (["mark", str(mark)] if mark is not None else [])
    try:
        out = await sh.Command("ip")(*args, _async=True, _timeout=timeout)
        routes = json.loads(out)
    except (sh.ErrorReturnCode, sh.CommandNotFound, ValueError) as exc:
        return {"error": str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}
    route = routes[0] if routes else {}
    return {"dev": route.get("dev"), "src": route.get("prefsrc"), "gateway": route.get("gateway")}


# ---------------------------------------------------------------------------------------------
# server and client


def _iperf3() -> sh.Command:
    path = shutil.which(IPERF3)
    if path is None:
        raise ProbeUnavailable(MISSING_HINT)
    return sh.Command(path)


async def _established(pid: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_ESTABLISHED for c in connections)


async def run_server(params: IperfServer, ctx: ProbeContext) -> dict[str, Any]:
    """One-off iperf3 server: returns after one client's transfer (or raises when none came)."""
    iperf3 = _iperf3()
    name = f"iperf3-server:{params.bind}:{params.port}"
    proc = iperf3(
        "-s",
        "-1",
        "-J",
        "-B",
        params.bind,
        "-p",
        str(params.port),
        "--idle-timeout",
        str(int(params.accept_within) + 1),
        _async=True,
        _return_cmd=True,
        _bg_exc=False,
        _preexec_fn=set_parent_death_signal,
    )

    async def release() -> None:
        await kill_and_reap(proc)

    ctx.cleanup.add(ctx.run_id, name, release)
    try:
        give_up = time.monotonic() + params.accept_within
        start: CpuMark | None = None
        # Wait for the client's connection (the transfer starts with it) or the process's end.
        while proc.process.is_alive()[0]:
            if await _established(proc.pid):
                start = cpu_mark()
                break
            if time.monotonic() >= give_up:
                raise RuntimeError(f"no iperf3 client came within {params.accept_within:g}s")
            await asyncio.sleep(SERVER_POLL_INTERVAL)
        finish_by = params.duration + params.accept_within + 10.0
        try:
            out = str(await asyncio.wait_for(proc, finish_by))
        except sh.ErrorReturnCode as exc:
            out = exc.stdout.decode(errors="replace") or exc.stderr.decode(errors="replace")
        except TimeoutError as exc:
            raise RuntimeError(f"iperf3 server still running after {finish_by:g}s") from exc
        end = cpu_mark()
        if start is None:
            raise RuntimeError(f"iperf3 server ended before any client connected: {out.strip()[:200]!r}")
        summary = summarize_server(_parse_json(out))
        return {
            "role": "server",
            "bind": params.bind,
            "port": params.port,
            **summary,
            "cpu": cpu_between(start, end),
            "boot_id": boot_id(),
        }
    finally:
        await ctx.cleanup.release(ctx.run_id, name)


def _refused(text: str) -> bool:
    """iperf3's "unable to connect to server: Connection refused": nobody listens yet."""
    return "Connection refused" in text


def _client_outcome(out: str, failed: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(the client's JSON report, why it failed or None).  iperf3 (3.12 at least) exits 0 with
    ``-J`` when it could not connect, the error in the report: a report's ``error`` is a failure
    whatever the exit status."""
    try:
        report = _parse_json(out)
    except RuntimeError as exc:
        return None, out.strip() if failed else str(exc)
    error = report.get("error")
    if error:
        return report, str(error)
    return report, (out.strip() or "iperf3 failed") if failed else None


async def run_client(params: IperfClient, ctx: ProbeContext) -> dict[str, Any]:
    iperf3 = _iperf3()
    args = [
        "-c",
        params.host,
        "-p",
        str(params.port),
        "-J",
        "-t",
        str(int(params.duration)),
        "-P",
        str(params.streams),
        "--connect-timeout",
        "3000",
    ]
    if params.omit:
        args += ["-O", str(params.omit)]
    if params.bind:
        args += ["-B", params.bind]
    route = await route_of(params.host)
    give_up = time.monotonic() + params.connect_within
    limit = params.duration + params.omit + 15.0
    attempts = 0
    while True:
        attempts += 1
        proc = iperf3(*args, _async=True, _return_cmd=True, _bg_exc=False, _preexec_fn=set_parent_death_signal)
        start = cpu_mark()
        try:
            out = str(await asyncio.wait_for(proc, limit))
            failed = False
        except sh.ErrorReturnCode as exc:
            out = exc.stdout.decode(errors="replace") + exc.stderr.decode(errors="replace")
            failed = True
        except TimeoutError as exc:
            raise RuntimeError(f"iperf3 client still running after {limit:g}s") from exc
        finally:
            await kill_and_reap(proc)
        end = cpu_mark()
        report, message = _client_outcome(out, failed)
        if message is None and report is not None:
            summary = summarize_client(report)
            break
        if _refused(message or out) and time.monotonic() < give_up:
            await asyncio.sleep(CONNECT_RETRY_INTERVAL)
            continue
        raise RuntimeError(f"iperf3 client to {params.host}:{params.port}: {str(message or out.strip())[:300]}")
    return {
        "role": "client",
        "host": params.host,
        "port": params.port,
        "duration_s": params.duration,
        "streams": params.streams,
        "connect_attempts": attempts,
        **summary,
        "cpu": cpu_between(start, end),
        "route": route,
        "boot_id": boot_id(),
    }


async def measure(params: IperfParams, ctx: ProbeContext) -> dict[str, Any]:
    side = params.root
    if isinstance(side, IperfServer):
        return await run_server(side, ctx)
    return await run_client(side, ctx)
