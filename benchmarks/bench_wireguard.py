"""Benchmark: talbench's WireGuard overhead figures next to iperf3 and ping run by hand, over the
same two paths (plain lab network, WireGuard tunnel), in one run.

    .venv/bin/python benchmarks/bench_wireguard.py [--rounds 5] [--duration 5] [--omit 1] [--count 200]

Builds a 2-node lab (cp1, cp2: network namespaces, real agents).  Rounds alternate the two tools
(talbench first in even rounds, by hand first in odd ones):
- talbench: the WireguardDriver on the pair cp1-cp2 (its wireguard.tunnel and wireguard.iperf jobs
  and the RTT probe's job, through the agents); figures as the metrics report them;
- by hand (benchmarks/wg_by_hand.py): a WireGuard tunnel built with wireguard-go, wg and ip
  directly in the two namespaces (its own names, keys, port and addresses, talbench's MTU), then
  ``iperf3 -c`` from cp1 to cp2 over the plain path and through that tunnel with talbench's
  ``-t``, ``-O`` and one stream, the receiver's rate, and ``ping`` over both (same count and
  interval as talbench's RTT), everything torn down after the round.
The benchmark and everything it starts (the agents, their tools, the by-hand tools) share one CPU
cgroup, so the host's other work weighs on both tools alike (wg_by_hand.py says why).  Prints
medians with the spread over rounds, whether they agree (Done-when: throughput share within 10 %,
RTT added within 0.1 ms) and the host's load, and writes results/bench/wireguard.json.  Needs
root, iperf3, wg, wireguard-go, ping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from wg_by_hand import CpuGroup, hand_round

from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.lab import lab
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey, Subject
from talbench.bench.probes.wireguard.driver import WireguardDriver
from talbench.bench.run import metrics_of
from talbench.bench.stats import Summary

SCHEMA_VERSION = 2
ROOT = Path(__file__).resolve().parents[1]
SHARE_TOLERANCE = 0.10  # Done-when 4: throughput share within 10 %
RTT_ADDED_TOLERANCE_MS = 0.1  # and RTT added within 0.1 ms


# -- talbench --------------------------------------------------------------------------------


async def talbench_round(state: LabState, settings: Any, round_no: int) -> dict[str, float]:
    driver = WireguardDriver()
    metrics = metrics_of({"wireguard": driver})
    token = state.token()
    sessions = [aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(n.socket))) for n in state.nodes]
    try:
        clients = {
            n.name: AgentClient(n.name, s, "http://agent", token) for n, s in zip(state.nodes, sessions, strict=True)
        }
        run_id = f"bench-wg-{round_no}"
        fleet = Fleet(run_id, state.cluster_nodes(), clients, agent_port=state.nodes[0].port)
        key = ResultKey("wireguard", "cp1", "cp2")
        measured = await driver.run(frozenset({key}), fleet, settings, NullProgress())
        await asyncio.gather(*(c.release_run(run_id) for c in clients.values()), return_exceptions=True)
    finally:
        for session in sessions:
            await session.close()
    measurement = measured[0]
    if not measurement.ok:
        raise RuntimeError(f"talbench: {measurement.error}")
    subject = Subject(("cp1", "cp2"))
    nodes = state.cluster_nodes()

    def value(name: str) -> float:
        observation = metrics[name].observe(subject, [measurement], nodes)
        if observation.value is None:
            raise RuntimeError(f"{name}: {observation.invalid or observation.detail}")
        return observation.value

    data = measurement.data

    def dwell_p50_ms(path: str) -> float:
        return statistics.median(data[path]["rtt"].get("dwell_ns") or [0]) / 1e6

    return {
        "plain_bps": value("wireguard.node_throughput"),
        "tunnel_bps": value("wireguard.tunnel_throughput"),
        "ratio": value("wireguard.throughput_ratio"),
        "plain_rtt_p50_ms": value("wireguard.node_rtt_p50") * 1e3,
        "plain_rtt_p99_ms": Summary.of([ns / 1e9 for ns in data["node_path"]["rtt"]["samples_ns"]]).p99 * 1e3,
        "tunnel_rtt_p50_ms": value("wireguard.tunnel_rtt_p50") * 1e3,
        "tunnel_rtt_p99_ms": value("wireguard.tunnel_rtt_p99") * 1e3,
        "rtt_added_ms": value("wireguard.rtt_added") * 1e3,
        "tunnel_cpu_per_gbit": value("wireguard.tunnel_cpu_per_gbit"),
        "plain_dwell_p50_ms": dwell_p50_ms("node_path"),
        "tunnel_dwell_p50_ms": dwell_p50_ms("tunnel"),
        "implementation": data["tunnel"]["implementation"]["cp1"],
        "reflector": f"{data['settings']['rtt_reflector']} ({data['settings']['rtt_reflector_why']})",
    }


# -- main ------------------------------------------------------------------------------------

ROWS = [
    ("plain_bps", "plain throughput", "Gbit/s", 1e-9),
    ("tunnel_bps", "tunnel throughput", "Gbit/s", 1e-9),
    ("ratio", "tunnel / plain", "%", 100.0),
    ("plain_rtt_p50_ms", "plain RTT p50", "ms", 1.0),
    ("plain_rtt_p99_ms", "plain RTT p99", "ms", 1.0),
    ("tunnel_rtt_p50_ms", "tunnel RTT p50", "ms", 1.0),
    ("tunnel_rtt_p99_ms", "tunnel RTT p99", "ms", 1.0),
    ("rtt_added_ms", "RTT added (p50)", "ms", 1.0),
]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def agreement(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Done-when 4 on the medians over rounds, and the same on each round's own pair."""
    share_t = statistics.median(r["talbench"]["ratio"] for r in rounds)
    share_h = statistics.median(r["by_hand"]["ratio"] for r in rounds)
    added_t = statistics.median(r["talbench"]["rtt_added_ms"] for r in rounds)
    added_h = statistics.median(r["by_hand"]["rtt_added_ms"] for r in rounds)
    paired_share = [r["talbench"]["ratio"] / r["by_hand"]["ratio"] - 1 for r in rounds]
    paired_added = [r["talbench"]["rtt_added_ms"] - r["by_hand"]["rtt_added_ms"] for r in rounds]
    share_off, added_off = share_t / share_h - 1, added_t - added_h
    return {
        "share_relative_difference": share_off,
        "share_within_10_percent": abs(share_off) <= SHARE_TOLERANCE,
        "rtt_added_difference_ms": added_off,
        "rtt_added_within_0_1_ms": abs(added_off) <= RTT_ADDED_TOLERANCE_MS,
        "per_round_share_relative_difference": paired_share,
        "per_round_rtt_added_difference_ms": paired_added,
    }


def run_rounds(args: argparse.Namespace, settings: Any, root: Path) -> list[dict[str, Any]]:
    interval = args.interval_ms / 1000
    rounds: list[dict[str, Any]] = []
    state = lab.up(LabSpec(control_planes=2, workers=0), root, persistent=False)
    for r in range(args.rounds):
        load_before = os.getloadavg()[0]
        order = ("talbench", "by_hand") if r % 2 == 0 else ("by_hand", "talbench")
        figures: dict[str, Any] = {}
        for side in order:
            if side == "talbench":
                figures[side] = asyncio.run(talbench_round(state, settings, r))
            else:
                figures[side] = hand_round(state, args.duration, args.omit, args.count, interval, str(r))
        figures["first"] = order[0]
        figures["load_1min"] = [load_before, os.getloadavg()[0]]
        rounds.append(figures)
        print(f"round {r + 1}/{args.rounds} done ({order[0]} first, load {load_before:.1f})", file=sys.stderr)
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each tool first in half of them (medians)")
    parser.add_argument("--duration", type=int, default=5, help="iperf3 -t: seconds per path")
    parser.add_argument("--omit", type=int, default=1, help="iperf3 -O: seconds of slow start left out (both tools)")
    parser.add_argument("--count", type=int, default=200, help="RTT samples per path")
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument(
        "--cpu-weight", type=float, default=10.0, help="the CPU group's weight against one other session"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 3
    missing = [t for t in ("ip", "iperf3", "wg", "wireguard-go", "ping") if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 3
    settings = WireguardDriver().settings(
        {
            "duration": f"{args.duration}s",
            "omit": args.omit,
            "rtt_count": args.count,
            "rtt_interval": f"{args.interval_ms}ms",
            "min_rtt_samples": max(1, args.count // 2),
        },
        quick=False,
    )
    root = Path(tempfile.mkdtemp(prefix="tbw-", dir="/var/tmp"))
    group = CpuGroup(f"talbench-bench-wg-{os.getpid()}", args.cpu_weight)
    load_start = os.getloadavg()
    try:
        rounds = run_rounds(args, settings, root)
    finally:
        try:
            lab.down(root, term_timeout=5.0)
            shutil.rmtree(root, ignore_errors=True)
        finally:
            group.leave()
    load_end = os.getloadavg()

    summary = {
        field: {side: spread([r[side][field] for r in rounds]) for side in ("talbench", "by_hand")}
        for field, *_ in ROWS
    }
    agree = agreement(rounds)
    cpu = statistics.median(r["talbench"]["tunnel_cpu_per_gbit"] for r in rounds)
    dwell = statistics.median(r["talbench"]["tunnel_dwell_p50_ms"] for r in rounds)
    print(
        f"\nWireGuard overhead, cp1 -> cp2, {args.rounds} interleaved rounds (median [min-max]), iperf3 "
        f"-t {args.duration} -O {args.omit}, {args.count} RTT samples at {args.interval_ms:g} ms; tunnel: "
        f"{rounds[0]['talbench']['implementation']}; talbench's RTT reflector: {rounds[0]['talbench']['reflector']}; load average {load_start[0]:.1f} -> {load_end[0]:.1f}; "
        f"{group.note}"
    )
    print(f"{'figure':18} {'talbench':>24} {'by hand':>24}  unit")
    for field, label, unit, scale in ROWS:
        cells = [
            f"{v['median'] * scale:.3f} [{v['min'] * scale:.3f}-{v['max'] * scale:.3f}]"
            for v in (summary[field]["talbench"], summary[field]["by_hand"])
        ]
        print(f"{label:18} {cells[0]:>24} {cells[1]:>24}  {unit}")
    print(f"{'tunnel CPU/Gbit/s':18} {cpu:24.3f} {'-':>24}  cores (talbench only)")
    print(f"{'reflector dwell':18} {dwell:24.3f} {'-':>24}  ms, tunnel p50 (talbench only, excluded)")
    print(
        f"agreement: share {agree['share_relative_difference']:+.1%} "
        f"({'within' if agree['share_within_10_percent'] else 'NOT within'} 10 %), RTT added "
        f"{agree['rtt_added_difference_ms']:+.3f} ms "
        f"({'within' if agree['rtt_added_within_0_1_ms'] else 'NOT within'} 0.1 ms)"
    )
    out = ROOT / "results" / "bench" / "wireguard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA_VERSION,
        "benchmark": "wireguard",
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "cpu_group": group.note,
        "cpu_weight": args.cpu_weight,
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "omit_s": args.omit,
            "count": args.count,
            "interval_ms": args.interval_ms,
        },
        "median": summary,
        "agreement": agree,
        "tunnel_cpu_per_gbit": cpu,
        "rounds": rounds,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2))
    tmp.replace(out)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
