"""Benchmark: talbench's closed-loop etcd ceiling next to `etcdctl check perf --load=l`, on the
same scratch cluster layout in one run.

    .venv/bin/python tests/benchmarks/bench_etcd.py [--duration 60] [--clients 500] [--workers 0]
                                                    [--rounds 3] [--loopback]

On a lab (root; 3 control planes, no worker): every round starts a fresh 3-member scratch
cluster through the agents (etcd.member), runs `etcdctl check perf --load=l` from inside cp1's
namespace against the three client URLs (60 s, etcdctl's own rate limit 8000/s, 500 clients),
stops the members; and a fresh cluster again for talbench's etcd.load from cp1's agent in
closed-loop mode (the ceiling) for the same duration, stops the members.  Which tool goes first
alternates from round to round.  Without root, or with --loopback, the same on 3 members on
127.0.0.1.  Both tools' counts are checked against the revisions etcd committed.  Prints both
achieved rates, their ratio per round and the median (target: talbench >= 0.9 of etcdctl's) and
writes results/bench/etcd.json.
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

from talbench.agents.etcdload.generator import LoadSpec, run_load
from talbench.agents.etcdload.histogram import LatencyHistogram
from talbench.agents.etcdload.local_cluster import local_cluster
from talbench.agents.etcdload.settings import EtcdSettings
from talbench.agents.params import validate
from talbench.bench.probes.etcd import LOAD_JOB, control_planes, load_deadline, load_params, scratch_cluster

THROUGHPUT = re.compile(r"Throughput (?:is|too low:) (\d+(?:\.\d+)?) writes/s")
PREFIX = "/talbench/bench-etcd/"


def etcdctl(args: list[str], namespace: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    """etcdctl (the one `make etcd` builds), run inside ``namespace`` when one is given."""
    argv = ["etcdctl", *args]
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "ETCDCTL_API": "3"})


def etcdctl_perf(endpoints: list[str], namespace: str | None, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    done = etcdctl(["--endpoints", ",".join(endpoints), "check", "perf", "--load", "l"], namespace, timeout)
    elapsed = time.monotonic() - started
    text = done.stdout + done.stderr
    match = THROUGHPUT.search(text)
    if not match:
        raise RuntimeError(f"etcdctl check perf printed no throughput (exit {done.returncode}): {text[-500:]}")
    verdict_lines = [
        line.strip()
        for line in text.replace("\r", "\n").splitlines()
        if line.strip().startswith(("PASS", "FAIL", "Slowest", "Stddev"))
    ]
    return {
        "achieved_rate": float(match.group(1)),
        "exit": done.returncode,
        "elapsed_s": elapsed,
        "lines": verdict_lines,
    }


def etcd_revision(endpoints: list[str], namespace: str | None) -> int:
    """The cluster's current revision: every committed put adds one, so the revisions a load
    added check the writes a tool says it made."""
    done = etcdctl(["--endpoints", endpoints[0], "endpoint", "status", "-w", "json"], namespace, 30)
    if done.returncode != 0:
        raise RuntimeError(f"etcdctl endpoint status failed: {done.stderr.strip()[-300:]}")
    return int(json.loads(done.stdout)[0]["Status"]["header"]["revision"])


async def counted(
    measure: Callable[[], Awaitable[dict[str, Any]]], urls: list[str], namespace: str | None
) -> dict[str, Any]:
    """``measure()``'s figures plus the revisions etcd committed meanwhile."""
    before = await asyncio.to_thread(etcd_revision, urls, namespace)
    figures = await measure()
    figures["revisions_added"] = await asyncio.to_thread(etcd_revision, urls, namespace) - before
    return figures


def tools_in_order(index: int) -> tuple[str, str]:
    """Which tool goes first alternates, so a host that slows down (or warms up) over the run
    favours neither."""
    return ("etcdctl", "talbench") if index % 2 == 0 else ("talbench", "etcdctl")


def summarize(load: dict[str, Any]) -> dict[str, Any]:
    latency = LatencyHistogram.from_wire(load["latency"])
    return {
        "achieved_rate": load["achieved_rate"],
        "ok": load["requests"]["ok"],
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


# ---- on loopback -----------------------------------------------------------------------------------


async def loopback_round(args: argparse.Namespace, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"first": tools_in_order(index)[0]}
    with tempfile.TemporaryDirectory(prefix="tb-bench-etcd-", dir="/var/tmp") as data:
        for tool in tools_in_order(index):
            async with local_cluster(3, Path(data), f"bench-{tool}-{index}") as cluster:
                urls = list(cluster.client_urls)

                async def measure(tool: str = tool, urls: list[str] = urls) -> dict[str, Any]:
                    if tool == "etcdctl":
                        return await asyncio.to_thread(etcdctl_perf, urls, None, args.duration + 120)
                    spec = LoadSpec(
                        cluster.client_urls,
                        PREFIX,
                        "closed",
                        clients=args.clients,
                        duration=args.duration,
                        workers=args.workers,
                    )
                    return summarize(await run_load(spec))

                out[tool] = await counted(measure, urls, None)
    return out


# ---- on a lab ------------------------------------------------------------------------------------


async def _lab_round_with_state(
    root: Path, spec: Any, state: Any, args: argparse.Namespace, index: int
) -> dict[str, Any]:
    from talbench.bench.dispatch.lab import LabDispatcher

    settings = validate(
        EtcdSettings, {"mode": "ceiling", "clients": args.clients, "duration": args.duration, "workers": args.workers}
    )
    out: dict[str, Any] = {}
    async with LabDispatcher(root, spec).deploy(f"bench-etcd-{int(time.time())}-{index}") as fleet:
        members = control_planes(fleet)
        namespace = state.node(members[0].name).namespace
        out["first"] = tools_in_order(index)[0]
        for tool in tools_in_order(index):
            async with scratch_cluster(fleet, members, settings) as cluster:
                if cluster.failed:
                    raise RuntimeError(f"members did not start: {cluster.failed}")
                urls = [cluster.client_urls[n.name] for n in members]

                async def measure(tool: str = tool, urls: list[str] = urls) -> dict[str, Any]:
                    if tool == "etcdctl":
                        return await asyncio.to_thread(etcdctl_perf, urls, namespace, 200)
                    outcome = await fleet.agents[members[0].name].run_job(
                        LOAD_JOB, load_params(settings, urls), fleet.run_id, deadline=load_deadline(settings)
                    )
                    if not outcome.ok:
                        raise RuntimeError(f"talbench load failed: {outcome.error}")
                    return summarize(outcome.result["load"])

                out[tool] = await counted(measure, urls, namespace)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--duration", type=float, default=60.0, help="talbench's run; etcdctl check perf always runs 60 s"
    )
    parser.add_argument(
        "--clients", type=int, default=500, help="talbench's closed-loop clients (etcdctl's l profile: 500)"
    )
    parser.add_argument("--workers", type=int, default=0, help="talbench's load processes (0: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="the median ratio of this many rounds is the figure")
    parser.add_argument("--loopback", action="store_true", help="3 members on 127.0.0.1 instead of a lab")
    parser.add_argument("--out", type=Path, default=Path("results/bench/etcd.json"))
    args = parser.parse_args()
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        print("needs etcd and etcdctl (make etcd)", file=sys.stderr)
        return 3
    use_lab = not args.loopback and os.geteuid() == 0
    rounds: list[dict[str, Any]] = []
    where = "lab (3 control planes, network namespaces)" if use_lab else "loopback (3 members on 127.0.0.1)"
    if use_lab:
        from talbench.bench.lab import lab as labs
        from talbench.bench.lab.topology import make_spec

        spec = make_spec(3, 0, [])
        root = Path(tempfile.mkdtemp(prefix="tb-bench-", dir="/var/tmp"))
        try:
            state = labs.up(spec, root)
            for index in range(args.rounds):
                rounds.append(asyncio.run(_lab_round_with_state(root, spec, state, args, index)))
        finally:
            labs.down(root)
            shutil.rmtree(root, ignore_errors=True)
    else:
        for index in range(args.rounds):
            rounds.append(asyncio.run(loopback_round(args, index)))
    print(f"etcd write ceiling on {where}; host {platform.node()}, {os.cpu_count()} cores")
    print(
        f"{'round':>5} {'etcdctl l w/s':>14} {'talbench w/s':>13} {'ratio':>6} {'workers':>7} {'gen CPU/core':>13} {'p99 ms':>7}"
    )
    for index, row in enumerate(rounds):
        row["ratio"] = row["talbench"]["achieved_rate"] / row["etcdctl"]["achieved_rate"]
        cpu = ", ".join(f"{c * 100:.0f}%" for c in row["talbench"]["cpu_per_worker"])
        print(
            f"{index + 1:>5} {row['etcdctl']['achieved_rate']:>14.0f} {row['talbench']['achieved_rate']:>13.0f} "
            f"{row['ratio']:>6.2f} {row['talbench']['workers']:>7} {cpu:>13} {row['talbench']['p99_ms']:>7.1f}"
        )
    for index, row in enumerate(rounds):
        etcdctl_writes = row["etcdctl"]["achieved_rate"] * 60  # check perf runs 60 s
        print(
            f"  round {index + 1}: etcd revisions added: etcdctl {row['etcdctl']['revisions_added']} "
            f"(its rate x 60 s = {etcdctl_writes:.0f}), talbench {row['talbench']['revisions_added']} "
            f"(writes it counted: {row['talbench']['ok']}; each tool also deletes its prefix at the end)"
        )
    ratios = [row["ratio"] for row in rounds]
    median_ratio = statistics.median(ratios)
    print(f"median ratio {median_ratio:.2f} over {len(ratios)} round(s), lowest {min(ratios):.2f} (target >= 0.9)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "schema": "talbench/bench-etcd/v1",
                "when": time.time(),
                "host": platform.node(),
                "kernel": platform.release(),
                "cores": os.cpu_count(),
                "where": where,
                "duration_s": args.duration,
                "clients": args.clients,
                "workers": args.workers,
                "rounds": rounds,
                "median_ratio": median_ratio,
                "min_ratio": min(ratios),
                "command": " ".join(sys.argv),
            },
            indent=1,
        )
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
