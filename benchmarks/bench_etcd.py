"""Benchmark: talbench's closed-loop etcd write ceiling next to etcd's own load tool
(`benchmark put`) and `etcdctl check perf`, on the same fresh scratch cluster in one run.

    .venv/bin/python benchmarks/bench_etcd.py [--duration 60] [--load l] [--conns 0]
                                                    [--workers 0] [--rounds 3] [--loopback]

Every round starts ONE fresh 3-member scratch cluster and runs the three tools on it one after
the other, with the same load shape: the client count of `etcdctl check perf --load` (l: 500
clients, each its own connection), 256-byte random keys and 1 KiB values.
- talbench: etcd.load in closed-loop mode (the ceiling) for --duration seconds.
- benchmark: `benchmark put --clients N --conns N --key-size 256 --val-size 1024` over random
  keys, no rate limit (--conns: fewer etcd clients shared by the N); it runs for a count, not a
  time: as many puts as the fastest tool of the run so far made in --duration seconds (1500/s
  before any).  Built by agents/build/build-etcd-benchmark.sh (`make bench` does).
- etcdctl: `etcdctl check perf --load L` (60 s, its own rate limit: l 8000/s).
Each tool's keys are deleted before the next starts.  Which tool goes first rotates from round
to round, so the cluster's age and size favour none.  On a lab (root; 3 control planes, no
worker) the members are the agents' (etcd.member), talbench's load runs from cp1's agent and the
two Go tools inside cp1's namespace.  Without root, or with --loopback, 3 members on 127.0.0.1.
Every count is checked against the revisions etcd committed.  The host's load average is kept
with each measurement.  Prints the rates, talbench/benchmark and talbench/etcdctl per round and
their medians (goal: >= 1.0 of each) and writes results/bench/etcd.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench_output import write_record  # this script's sibling (run as a file, its directory is on sys.path)

from talbench.agents.params import validate
from talbench.agents.probes.etcd.generator import LoadSpec, run_load
from talbench.agents.probes.etcd.histogram import LatencyHistogram
from talbench.agents.probes.etcd.local_cluster import local_cluster
from talbench.agents.probes.etcd.profiles import KEY_SIZE, PROFILES, VALUE_SIZE
from talbench.agents.probes.etcd.settings import EtcdSettings
from talbench.bench.probes.etcd.driver import LOAD_JOB, control_planes, load_deadline, load_params, scratch_cluster

THROUGHPUT = re.compile(r"Throughput (?:is|too low:) (\d+(?:\.\d+)?) writes/s")
BENCH_FIELD = re.compile(r"^\s*(Total|Slowest|Fastest|Average|Stddev|Requests/sec):\s*([\d.]+)", re.MULTILINE)
BENCH_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)% in ([\d.]+) secs", re.MULTILINE)
PREFIX = "/talbench/bench-etcd/"
TOOLS = ("talbench", "benchmark", "etcdctl")
CHECK_PERF_SECONDS = 60.0  # etcdctl check perf's fixed duration, every profile
FIRST_RATE_GUESS = 1500.0  # writes/s: sizes benchmark's count before any tool has measured
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "agents/build/build-etcd-benchmark.sh"


def run_in(argv: list[str], namespace: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    """``argv`` run inside ``namespace`` when one is given, bounded by ``timeout``."""
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "ETCDCTL_API": "3"})


def etcdctl_perf(endpoints: list[str], namespace: str | None, load: str) -> dict[str, Any]:
    started = time.monotonic()
    done = run_in(["etcdctl", "--endpoints", ",".join(endpoints), "check", "perf", "--load", load], namespace, 200)
    elapsed = time.monotonic() - started
    text = done.stdout + done.stderr
    match = THROUGHPUT.search(text)
    if not match:
        raise RuntimeError(f"etcdctl check perf printed no throughput (exit {done.returncode}): {text[-500:]}")
    verdicts = [
        line.strip()
        for line in text.replace("\r", "\n").splitlines()
        if line.strip().startswith(("PASS", "FAIL", "Slowest", "Stddev"))
    ]
    rate = float(match.group(1))
    return {
        "achieved_rate": rate,
        "writes": round(rate * CHECK_PERF_SECONDS),
        "exit": done.returncode,
        "elapsed_s": elapsed,
        "lines": verdicts,
    }


def benchmark_put(
    binary: str, endpoints: list[str], namespace: str | None, clients: int, conns: int, total: int, timeout: float
) -> dict[str, Any]:
    """etcd's `benchmark put`, unlimited rate, ``total`` random 256-byte keys of 1 KiB values,
    ``clients`` clients over ``conns`` etcd clients (each a gRPC connection to every member)."""
    argv = [
        binary,
        "--endpoints",
        ",".join(endpoints),
        "--clients",
        str(clients),
        "--conns",
        str(conns),
        "put",
        "--total",
        str(total),
        "--key-size",
        str(KEY_SIZE),
        "--val-size",
        str(VALUE_SIZE),
        "--key-space-size",
        str(2**31 - 1),
    ]
    done = run_in(argv, namespace, timeout)
    fields = {name: float(value) for name, value in BENCH_FIELD.findall(done.stdout)}
    if done.returncode != 0 or "Requests/sec" not in fields:
        raise RuntimeError(f"benchmark put failed (exit {done.returncode}): {(done.stdout + done.stderr)[-500:]}")
    percentiles = {float(p): float(s) for p, s in BENCH_PERCENTILE.findall(done.stdout)}
    errors = (
        done.stdout.split("Error distribution:", 1)[1].strip()[:500] if "Error distribution:" in done.stdout else ""
    )
    return {
        "achieved_rate": fields["Requests/sec"],
        "writes": total,
        "elapsed_s": fields["Total"],
        "p50_ms": percentiles.get(50.0, 0) * 1e3,
        "p99_ms": percentiles.get(99.0, 0) * 1e3,
        "max_ms": fields["Slowest"] * 1e3,
        "errors": errors,
        "argv": argv,
    }


def delete_all(endpoints: list[str], namespace: str | None) -> None:
    """benchmark put writes raw keys under no prefix: on the scratch cluster, delete every key."""
    done = run_in(
        ["etcdctl", "--endpoints", endpoints[0], "--command-timeout", "100s", "del", "--prefix", ""], namespace, 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"etcdctl del failed: {done.stderr.strip()[-300:]}")


def etcd_revision(endpoints: list[str], namespace: str | None) -> int:
    """The cluster's current revision: every committed put adds one, so the revisions a load
    added check the writes a tool says it made."""
    done = run_in(["etcdctl", "--endpoints", endpoints[0], "endpoint", "status", "-w", "json"], namespace, 30)
    if done.returncode != 0:
        raise RuntimeError(f"etcdctl endpoint status failed: {done.stderr.strip()[-300:]}")
    return int(json.loads(done.stdout)[0]["Status"]["header"]["revision"])


async def counted(
    measure: Callable[[], Awaitable[dict[str, Any]]], urls: list[str], namespace: str | None
) -> dict[str, Any]:
    """``measure()``'s figures, the revisions etcd committed meanwhile (each tool's own prefix
    delete at the end adds one), and the host's load average before and after."""
    before = await asyncio.to_thread(etcd_revision, urls, namespace)
    load_before = os.getloadavg()
    figures = await measure()
    figures["loadavg_before"], figures["loadavg_after"] = load_before, os.getloadavg()
    figures["revisions_added"] = await asyncio.to_thread(etcd_revision, urls, namespace) - before
    return figures


def tools_in_order(index: int) -> tuple[str, ...]:
    """The tools rotate: each one goes first, second and third over three rounds, so a cluster
    that grows (or a host that slows down) over a round favours none."""
    shift = index % len(TOOLS)
    return TOOLS[shift:] + TOOLS[:shift]


def summarize(load: dict[str, Any]) -> dict[str, Any]:
    latency = LatencyHistogram.from_wire(load["latency"])
    return {
        "achieved_rate": load["achieved_rate"],
        "writes": load["requests"]["ok"],
        "errors": load["requests"]["errors"],
        "workers": load["workers"],
        "clients": load["clients"],
        "cpu_per_worker": load["cpu"]["per_worker"],
        "cpu_total_fraction": load["cpu"]["total_fraction"],
        "saturated": load["saturated"],
        "p50_ms": (latency.percentile(50) or 0) * 1e3,
        "p99_ms": (latency.percentile(99) or 0) * 1e3,
        "max_ms": (latency.max() or 0) * 1e3,
    }


async def run_round(
    index: int,
    args: argparse.Namespace,
    urls: list[str],
    namespace: str | None,
    talbench_load: Callable[[], Awaitable[dict[str, Any]]],
    fastest: list[float],
) -> dict[str, Any]:
    """The three tools on one cluster, in this round's order.  ``fastest`` holds the best rate
    of the run so far (it sizes benchmark's count) and is updated."""
    out: dict[str, Any] = {"order": list(tools_in_order(index))}
    for tool in tools_in_order(index):

        async def measure(tool: str = tool) -> dict[str, Any]:
            if tool == "etcdctl":
                return await asyncio.to_thread(etcdctl_perf, urls, namespace, args.load)
            if tool == "benchmark":
                total = round(max(fastest, default=FIRST_RATE_GUESS) * args.duration)
                timeout = 3 * args.duration + 120
                figures = await asyncio.to_thread(
                    benchmark_put, args.benchmark, urls, namespace, args.clients, args.conns, total, timeout
                )
                await asyncio.to_thread(delete_all, urls, namespace)
                return figures
            return await talbench_load()

        out[tool] = await counted(measure, urls, namespace)
        fastest.append(out[tool]["achieved_rate"])
    rates = ", ".join(f"{tool} {out[tool]['achieved_rate']:.0f}" for tool in out["order"])
    print(f"round {index + 1}: writes/s {rates}", flush=True)
    out["ratio_benchmark"] = out["talbench"]["achieved_rate"] / out["benchmark"]["achieved_rate"]
    out["ratio_etcdctl"] = out["talbench"]["achieved_rate"] / out["etcdctl"]["achieved_rate"]
    return out


async def loopback_round(args: argparse.Namespace, index: int, fastest: list[float]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tb-bench-etcd-", dir="/var/tmp") as data:
        async with local_cluster(3, Path(data), f"bench-{index}") as cluster:
            spec = LoadSpec(
                cluster.client_urls,
                PREFIX,
                "closed",
                clients=args.clients,
                duration=args.duration,
                workers=args.workers,
            )

            async def talbench_load() -> dict[str, Any]:
                return summarize(await run_load(spec))

            out = await run_round(index, args, list(cluster.client_urls), None, talbench_load, fastest)
    return out


async def lab_round(
    root: Path, spec: Any, state: Any, args: argparse.Namespace, index: int, fastest: list[float]
) -> dict[str, Any]:
    from talbench.bench.dispatch.lab import LabDispatcher

    settings = validate(
        EtcdSettings, {"mode": "ceiling", "clients": args.clients, "duration": args.duration, "workers": args.workers}
    )
    async with LabDispatcher(root, spec).deploy(f"bench-etcd-{int(time.time())}-{index}") as fleet:
        members = control_planes(fleet)
        namespace = state.node(members[0].name).namespace
        async with scratch_cluster(fleet, members, settings) as cluster:
            if cluster.failed:
                raise RuntimeError(f"members did not start: {cluster.failed}")
            urls = [cluster.client_urls[n.name] for n in members]

            async def talbench_load() -> dict[str, Any]:
                outcome = await fleet.agents[members[0].name].run_job(
                    LOAD_JOB, load_params(settings, urls), fleet.run_id, deadline=load_deadline(settings)
                )
                if not outcome.ok:
                    raise RuntimeError(f"talbench load failed: {outcome.error}")
                return summarize(outcome.result["load"])

            return await run_round(index, args, urls, namespace, talbench_load, fastest)


def benchmark_binary() -> str | None:
    """etcd's benchmark as build-etcd-benchmark.sh caches it (BENCHMARK=path overrides)."""
    path = os.environ.get("BENCHMARK") or run_in([str(BUILD_SCRIPT), "--print"], None, 10).stdout.strip()
    return path if path and os.access(path, os.X_OK) else None


def report(rounds: list[dict[str, Any]], where: str, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"etcd write ceiling on {where}, one fresh cluster per round, {args.clients} clients "
        f"(benchmark: {args.conns} conns), "
        f"{KEY_SIZE} B keys, {VALUE_SIZE} B values; host {platform.node()}, {os.cpu_count()} cores"
    )
    print(
        f"{'round':>5} {'order':<28} {'talbench w/s':>12} {'benchmark w/s':>13} {'check perf w/s':>14} "
        f"{'/bench':>6} {'/perf':>6} {'p99 ms t/b':>11} {'gen CPU':>9} {'load avg':>9}"
    )
    for index, row in enumerate(rounds):
        cpu = "+".join(f"{c * 100:.0f}" for c in row["talbench"]["cpu_per_worker"]) + "%"
        loads = [row[t][k][0] for t in TOOLS for k in ("loadavg_before", "loadavg_after")]
        print(
            f"{index + 1:>5} {'>'.join(row['order']):<28} {row['talbench']['achieved_rate']:>12.0f} "
            f"{row['benchmark']['achieved_rate']:>13.0f} {row['etcdctl']['achieved_rate']:>14.0f} "
            f"{row['ratio_benchmark']:>6.2f} {row['ratio_etcdctl']:>6.2f} "
            f"{row['talbench']['p99_ms']:>5.1f}/{row['benchmark']['p99_ms']:<5.1f} {cpu:>9} "
            f"{min(loads):>4.1f}-{max(loads):<4.1f}"
        )
    for index, row in enumerate(rounds):
        counts = ", ".join(f"{t} {row[t]['revisions_added']} for {row[t]['writes']} writes" for t in row["order"])
        print(
            f"  round {index + 1}: etcd revisions added: {counts} (a delete at a tool's end adds 1; etcdctl's "
            f"writes are its rate x {CHECK_PERF_SECONDS:.0f} s); benchmark ran {row['benchmark']['elapsed_s']:.0f} s"
        )
    summary: dict[str, Any] = {}
    for key, name in (("ratio_benchmark", "talbench/benchmark"), ("ratio_etcdctl", "talbench/check perf")):
        ratios = [row[key] for row in rounds]
        summary[key] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        print(
            f"{name}: median {summary[key]['median']:.2f} over {len(ratios)} round(s), "
            f"{min(ratios):.2f}-{max(ratios):.2f} (goal >= 1.0)"
        )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="talbench's run, and benchmark's count (check perf always runs 60 s)",
    )
    parser.add_argument(
        "--load",
        choices=sorted(PROFILES),
        default="l",
        help="etcdctl check perf's profile; its client count is every tool's",
    )
    parser.add_argument(
        "--conns", type=int, default=0, help="benchmark's --conns (0: one per client, as etcdctl check perf's clients)"
    )
    parser.add_argument("--workers", type=int, default=0, help="talbench's load processes (0: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the tools' order rotates")
    parser.add_argument("--loopback", action="store_true", help="3 members on 127.0.0.1 instead of a lab")
    parser.add_argument("--out", type=Path, default=Path("results/bench/etcd.json"))
    args = parser.parse_args()
    args.clients = PROFILES[args.load].clients
    args.conns = args.conns or args.clients
    args.benchmark = benchmark_binary()
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None or args.benchmark is None:
        print(
            "needs etcd, etcdctl (make etcd) and etcd's benchmark (agents/build/build-etcd-benchmark.sh)",
            file=sys.stderr,
        )
        return 3
    use_lab = not args.loopback and os.geteuid() == 0
    where = "lab (3 control planes, network namespaces)" if use_lab else "loopback (3 members on 127.0.0.1)"
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"host: {uptime_before}")
    rounds: list[dict[str, Any]] = []
    fastest: list[float] = []
    if use_lab:
        from talbench.bench.lab import lab as labs
        from talbench.bench.lab.topology import make_spec

        spec = make_spec(3, 0, [])
        root = Path(tempfile.mkdtemp(prefix="tb-bench-", dir="/var/tmp"))
        try:
            state = labs.up(spec, root)
            for index in range(args.rounds):
                rounds.append(asyncio.run(lab_round(root, spec, state, args, index, fastest)))
        finally:
            labs.down(root)
            shutil.rmtree(root, ignore_errors=True)
    else:
        for index in range(args.rounds):
            rounds.append(asyncio.run(loopback_round(args, index, fastest)))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = report(rounds, where, args)
    print(f"host: {uptime_after}")
    measured = {
        "cores": os.cpu_count(),
        "where": where,
        "duration_s": args.duration,
        "load": args.load,
        "clients": args.clients,
        "key_size": KEY_SIZE,
        "value_size": VALUE_SIZE,
        "workers": args.workers,
        "benchmark": args.benchmark,
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "rounds": rounds,
        **summary,
    }
    write_record(args.out, "talbench/bench-etcd/v2", measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
