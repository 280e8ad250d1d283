"""Benchmark: talbench's WireGuard overhead figures next to iperf3 and ping run by hand, over the
same two paths (plain lab network, WireGuard tunnel), in one run.

    .venv/bin/python tests/benchmarks/bench_wireguard.py [--rounds 2] [--duration 5] [--count 200]

Builds a 2-node lab (cp1, cp2: network namespaces, real agents).  Rounds alternate:
- talbench: the WireguardDriver on the pair cp1-cp2 (its wireguard.tunnel and wireguard.iperf jobs
  and the RTT probe's job, through the agents); figures as the metrics report them;
- by hand: a WireGuard tunnel built with wireguard-go, wg and ip directly in the two namespaces
  (its own names, keys, port and addresses), then ``iperf3 -c`` from cp1 to cp2 over the plain
  path and through that tunnel, and ``ping`` over both (same count and interval as talbench's
  RTT), everything torn down after the round.
Prints a table and writes results/bench/wireguard.json.  Needs root, iperf3, wg, wireguard-go.
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
from pathlib import Path
from typing import Any

import aiohttp

from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.lab import lab
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey, Subject
from talbench.bench.probes.wireguard import WireguardDriver
from talbench.bench.run import metrics_of
from talbench.bench.stats import Summary

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[2]
HAND_ADDRESSES = ("198.19.0.1", "198.19.0.2")  # by hand: another /30 of the benchmarking range
HAND_PORT = 51999
HAND_IPERF_PORT = 5399


def sh(argv: list[str], *, timeout: float = 30, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


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
        "implementation": data["tunnel"]["implementation"]["cp1"],
    }


# -- by hand ---------------------------------------------------------------------------------


def hand_tunnel_up(state: LabState, tag: str) -> list[tuple[str, str, subprocess.Popen]]:
    """wireguard-go + wg + ip in both namespaces; returns (namespace, link, process) to tear down."""
    nodes = state.nodes[:2]
    keys = []
    for _ in nodes:
        private = sh(["wg", "genkey"]).strip()
        keys.append((private, sh(["wg", "pubkey"], stdin=private + "\n").strip()))
    made: list[tuple[str, str, subprocess.Popen]] = []
    try:
        for i, node in enumerate(nodes):
            name = f"bh{tag}{i}"
            proc = subprocess.Popen(
                in_ns(node.namespace, "wireguard-go", "-f", name),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "WG_PROCESS_FOREGROUND": "1"},
            )
            made.append((node.namespace, name, proc))
            give_up = time.monotonic() + 10
            while not Path(f"/var/run/wireguard/{name}.sock").exists():
                if time.monotonic() > give_up or proc.poll() is not None:
                    raise RuntimeError(f"wireguard-go {name} did not start")
                time.sleep(0.05)
        for i, (ns, name, _) in enumerate(made):
            other = 1 - i
            sh(
                in_ns(
                    ns,
                    "wg",
                    "set",
                    name,
                    "private-key",
                    "/dev/stdin",
                    "listen-port",
                    str(HAND_PORT),
                    "peer",
                    keys[other][1],
                    "endpoint",
                    f"{nodes[other].address}:{HAND_PORT}",
                    "allowed-ips",
                    f"{HAND_ADDRESSES[other]}/32",
                ),
                stdin=keys[i][0] + "\n",
            )
            sh(in_ns(ns, "ip", "address", "add", f"{HAND_ADDRESSES[i]}/30", "dev", name))
            sh(in_ns(ns, "ip", "link", "set", "dev", name, "mtu", "1420", "up"))
    except BaseException:
        hand_tunnel_down(made)
        raise
    return made


def hand_tunnel_down(made: list[tuple[str, str, subprocess.Popen]]) -> None:
    for ns, name, proc in made:
        sh(in_ns(ns, "ip", "link", "del", "dev", name), check=False)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def hand_iperf(server_ns: str, client_ns: str, host: str, duration: int) -> float:
    server = subprocess.Popen(
        in_ns(server_ns, "iperf3", "-s", "-1", "-B", host, "-p", str(HAND_IPERF_PORT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            done = subprocess.run(
                in_ns(client_ns, "iperf3", "-J", "-c", host, "-p", str(HAND_IPERF_PORT), "-t", str(duration)),
                capture_output=True,
                text=True,
                timeout=duration + 30,
            )
            if done.returncode == 0:
                return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"])
            if "refused" not in done.stdout + done.stderr:
                raise RuntimeError(f"iperf3 by hand: {done.stdout[-300:]} {done.stderr[-300:]}")
            time.sleep(0.1)
        raise RuntimeError("iperf3 server by hand never listened")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def hand_ping(ns: str, host: str, count: int, interval: float) -> list[float]:
    done = subprocess.run(
        in_ns(ns, "ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", host),
        capture_output=True,
        text=True,
        timeout=count * interval * 3 + 20,
    )
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", done.stdout)]


def hand_round(state: LabState, duration: int, count: int, interval: float, round_no: int) -> dict[str, float]:
    a, b = state.nodes[0], state.nodes[1]
    made = hand_tunnel_up(state, str(round_no))
    try:
        sh(
            in_ns(a.namespace, "ping", "-n", "-c", "10", "-i", "0.01", "-W", "1", HAND_ADDRESSES[1]), check=False
        )  # handshake, warm-up
        plain_rtt = hand_ping(a.namespace, b.address, count, interval)
        tunnel_rtt = hand_ping(a.namespace, HAND_ADDRESSES[1], count, interval)
        plain = hand_iperf(b.namespace, a.namespace, b.address, duration)
        tunnel = hand_iperf(b.namespace, a.namespace, HAND_ADDRESSES[1], duration)
    finally:
        hand_tunnel_down(made)
    p_plain, p_tunnel = Summary.of(plain_rtt), Summary.of(tunnel_rtt)
    return {
        "plain_bps": plain,
        "tunnel_bps": tunnel,
        "ratio": tunnel / plain,
        "plain_rtt_p50_ms": p_plain.p50,
        "plain_rtt_p99_ms": p_plain.p99,
        "tunnel_rtt_p50_ms": p_tunnel.p50,
        "tunnel_rtt_p99_ms": p_tunnel.p99,
        "rtt_added_ms": p_tunnel.p50 - p_plain.p50,
        "ping_replies": float(min(len(plain_rtt), len(tunnel_rtt))),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="iperf3 seconds per path")
    parser.add_argument("--count", type=int, default=200, help="RTT samples per path")
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 3
    missing = [t for t in ("ip", "iperf3", "wg", "wireguard-go", "ping") if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 3
    interval = args.interval_ms / 1000
    settings = WireguardDriver().settings(
        {
            "duration": f"{args.duration}s",
            "omit": 0,
            "rtt_count": args.count,
            "rtt_interval": f"{args.interval_ms}ms",
            "min_rtt_samples": max(1, args.count // 2),
        },
        quick=False,
    )
    root = Path(tempfile.mkdtemp(prefix="tbw-", dir="/var/tmp"))
    rounds: list[dict[str, Any]] = []
    try:
        state = lab.up(LabSpec(control_planes=2, workers=0), root, persistent=False)
        for r in range(args.rounds):
            ours = asyncio.run(talbench_round(state, settings, r))
            theirs = hand_round(state, args.duration, args.count, interval, r)
            rounds.append({"talbench": ours, "by_hand": theirs})
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        lab.down(root, term_timeout=5.0)
        shutil.rmtree(root, ignore_errors=True)

    def median(side: str, field: str) -> float:
        return statistics.median(r[side][field] for r in rounds)

    print(
        f"\nWireGuard overhead, cp1 -> cp2, {args.rounds} rounds (median), iperf3 {args.duration}s, "
        f"{args.count} RTT samples at {args.interval_ms:g} ms; tunnel: {rounds[0]['talbench']['implementation']}"
    )
    print(f"{'figure':22} {'talbench':>12} {'by hand':>12}  unit")
    summary = {}
    for field, label, unit, scale in ROWS:
        ours, theirs = median("talbench", field), median("by_hand", field)
        summary[field] = {"talbench": ours, "by_hand": theirs}
        print(f"{label:22} {ours * scale:12.3f} {theirs * scale:12.3f}  {unit}")
    cpu = median("talbench", "tunnel_cpu_per_gbit")
    print(f"{'tunnel CPU per Gbit/s':22} {cpu:12.3f} {'-':>12}  cores (talbench only)")
    out = ROOT / "results" / "bench" / "wireguard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA_VERSION,
        "benchmark": "wireguard",
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "count": args.count,
            "interval_ms": args.interval_ms,
        },
        "median": summary,
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
