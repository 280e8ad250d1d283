"""Benchmark: talbench's RTT probe next to `ping` on the same lab paths, in one run.

    .venv/bin/python tests/benchmarks/bench_rtt.py [--count 300] [--interval-ms 20] [--delay-ms 10]

Builds a 3-node lab with cp3 behind the delay line, measures cp1->cp2 (plain bridge) and
cp1->cp3 (through the delay line) with the talbench agent (UDP echo, the real driver and agents)
and then with ping from inside cp1's namespace, same count and interval, one path at a time for
both, and prints p50/p99 side by side.

Then once more with both tools on the same path at the same time ("together": the delay line
and the host in the same state for both), under a packet capture at both ends of the path
(tests/benchmarks/wire_capture.py, kernel stamps): the wire's own round trips, so each tool is
also held against the wire: ping against request-out -> reply-in at cp1's interface, talbench
against that minus the reflector's dwell on the wire (reply-out - request-in at the peer's
interface).  On the delayed path the router namespace is captured too: how long the delay line
held each packet beyond its delay (its own precision), flow by flow.  Writes
results/bench/rtt.json.  Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wire_capture import holds, round_trips  # this script's sibling (run as a file, its directory is on sys.path)

from talbench.bench.dispatch.lab import LabDispatcher
from talbench.bench.lab import lab as labs
from talbench.bench.lab.topology import TUN_DEVICE, make_spec
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey
from talbench.bench.probes.rtt import RttDriver
from talbench.bench.stats import Summary

PATHS = (("cp1", "cp2"), ("cp1", "cp3"))
CAPTURE = Path(__file__).with_name("wire_capture.py")


async def talbench_rtt(
    root: Path, spec, count: int, interval_ms: float, paths=PATHS
) -> dict[tuple[str, str], list[float]]:
    driver = RttDriver()
    settings = driver.settings(
        {"count": count, "interval": f"{interval_ms}ms", "jitter": 0.0, "min_samples": 1}, quick=False
    )
    measured = []
    async with LabDispatcher(root, spec).deploy(f"bench-rtt-{int(time.time())}") as fleet:
        # one path at a time, as ping measures them: the delay line carries the same load for both
        for a, b in paths:
            measured += await driver.run(frozenset({ResultKey("rtt", a, b)}), fleet, settings, NullProgress())
    out = {}
    for m in measured:
        if not m.ok:
            raise SystemExit(f"talbench RTT {m.key} failed: {m.error}")
        out[(m.key.node, m.key.peer)] = [ns / 1e6 for ns in m.data["samples_ns"]]
    return out


def ping_rtt(namespace: str, address: str, count: int, interval_ms: float) -> list[float]:
    argv = [
        "ip",
        "netns",
        "exec",
        namespace,
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        f"{interval_ms / 1000:.3f}",
        "-W",
        "1",
        address,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=count * interval_ms / 1000 * 3 + 30)
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", done.stdout)]


def together(root: Path, spec, state, count: int, interval_ms: float, delay_ms: float, work: Path) -> list[dict]:
    """Both tools on each path at once, the wire captured at both ends (and, on the delayed
    path, in the router namespace: the delay line's holds); one row per path."""
    rows = []
    for a, b in PATHS:
        seconds = count * interval_ms / 1000 * 2 + 60
        namespaces = {n: state.node(n).namespace for n in (a, b)}
        if b == "cp3":
            namespaces["router"] = state.router_namespace
        files = {n: work / f"{a}-{b}-{n}.jsonl" for n in namespaces}
        captures = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    namespace,
                    sys.executable,
                    str(CAPTURE),
                    str(seconds),
                    str(files[n]),
                    str(state.node(b).port),
                ]
            )
            for n, namespace in namespaces.items()
        ]
        try:
            time.sleep(1.0)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pinged = pool.submit(ping_rtt, state.node(a).namespace, state.node(b).address, count, interval_ms)
                ours = asyncio.run(talbench_rtt(root, spec, count, interval_ms, paths=((a, b),)))[(a, b)]
                theirs = pinged.result()
        finally:
            for process in captures:
                process.terminate()
                process.wait(timeout=10)
        wire_udp = round_trips(files[a], files[b], "udp")
        wire_icmp = round_trips(files[a], files[b], "icmp")
        t, p = Summary.of(ours), Summary.of(theirs)
        tw, pw = Summary.of(list(wire_udp.net_ms)), Summary.of(list(wire_icmp.rtt_ms))
        rows.append(
            {
                "path": f"{a}->{b}",
                "delayed": b == "cp3",
                "talbench": {"n": t.count, "p50_ms": t.p50, "p99_ms": t.p99},
                "ping": {"n": p.count, "p50_ms": p.p50, "p99_ms": p.p99},
                "wire_talbench": {"n": tw.count, "p50_ms": tw.p50, "p99_ms": tw.p99},
                "wire_ping": {"n": pw.count, "p50_ms": pw.p50, "p99_ms": pw.p99},
                "wire_dwell_p50_ms": Summary.of(list(wire_udp.dwell_ms)).p50,
            }
        )
        if "router" in files:
            rows[-1]["delay_line_late_ms"] = {
                protocol: _summary([hold - delay_ms for hold in holds(files["router"], TUN_DEVICE, protocol)])
                for protocol in ("udp", "icmp")
            }
    return rows


def _summary(values: list[float]) -> dict:
    s = Summary.of(values)
    return {"n": s.count, "p50_ms": s.p50, "p90_ms": s.p90, "p99_ms": s.p99, "max_ms": max(values, default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("results/bench/rtt.json"))
    parser.add_argument(
        "--no-together", dest="together", action="store_false", help="skip the together pass and its capture"
    )
    args = parser.parse_args()
    spec = make_spec(3, 0, [f"cp3={args.delay_ms:g}ms"])
    root = Path(tempfile.mkdtemp(prefix="tb-bench-", dir="/var/tmp"))
    rows = []
    together_rows: list[dict] = []
    load = os.getloadavg()
    try:
        state = labs.up(spec, root)
        ours = asyncio.run(talbench_rtt(root, spec, args.count, args.interval_ms))
        for a, b in PATHS:
            theirs = ping_rtt(state.node(a).namespace, state.node(b).address, args.count, args.interval_ms)
            t, p = Summary.of(ours[(a, b)]), Summary.of(theirs)
            rows.append(
                {
                    "path": f"{a}->{b}",
                    "delayed": b == "cp3",
                    "talbench": {"n": t.count, "p50_ms": t.p50, "p99_ms": t.p99},
                    "ping": {"n": p.count, "p50_ms": p.p50, "p99_ms": p.p99},
                }
            )
        if args.together:
            with tempfile.TemporaryDirectory(prefix="tb-wire-", dir="/var/tmp") as work:
                together_rows = together(root, spec, state, args.count, args.interval_ms, args.delay_ms, Path(work))
    finally:
        labs.down(root)
        root.rmdir() if root.exists() and not any(root.iterdir()) else None
    print(f"{'path':<10} {'tool':<9} {'n':>5} {'p50 ms':>9} {'p99 ms':>9}")
    for row in rows:
        for tool in ("talbench", "ping"):
            r = row[tool]
            print(f"{row['path']:<10} {tool:<9} {r['n']:>5} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f}")
    if together_rows:
        print("together (both tools at once on the path), each against the wire (kernel capture at both ends):")
        print(f"{'path':<10} {'tool':<9} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'wire p50':>9} {'wire p99':>9}")
        for row in together_rows:
            for tool in ("talbench", "ping"):
                r, w = row[tool], row[f"wire_{tool}"]
                print(
                    f"{row['path']:<10} {tool:<9} {r['n']:>5} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} "
                    f"{w['p50_ms']:>9.3f} {w['p99_ms']:>9.3f}"
                )
        print("  wire for talbench: request out -> reply in at cp1, less the reflector's dwell on the wire")
        for row in together_rows:
            for protocol, late in row.get("delay_line_late_ms", {}).items():
                print(
                    f"  delay line on {row['path']}, {protocol} packets (both ways, n={late['n']}) held beyond "
                    f"their delay: p50 {late['p50_ms']:.3f} p90 {late['p90_ms']:.3f} p99 {late['p99_ms']:.3f} "
                    f"max {late['max_ms']:.3f} ms"
                )
    print(f"host load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: {os.getloadavg()[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "schema": "talbench/bench-rtt/v1",
                "when": time.time(),
                "host": platform.node(),
                "kernel": platform.release(),
                "count": args.count,
                "interval_ms": args.interval_ms,
                "delay_ms": args.delay_ms,
                "rows": rows,
                "together": together_rows,
                "load_average": {"before": load, "after": os.getloadavg()},
                "command": " ".join(sys.argv),
            },
            indent=1,
        )
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
