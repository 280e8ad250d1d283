"""Benchmark: how a run scales with the cluster, on this host's lab and in plans.

    .venv/bin/python benchmarks/bench_scale.py [--workers 1,37] [--only CHECKS] [--quick]
                                                     [--plan-workers 1,37,997]

For each lab shape (3 control planes + N workers) a whole `talbench run --scenario control-plane
--target lab` as a user runs it (the CLI, real agents, a lab built and removed by the run):
wall time, the coordinator's CPU seconds and peak RSS (its own process, sampled), run.json's
size, the verdicts, and the control-plane pairs' RTT p50 from the raw samples.  Then for each
plan shape `talbench run --dry-run` (nothing built): the per-node budget (streams, packets/s) and
the results planned, at sizes this host cannot hold.  Writes results/bench/scale.json.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from bench_output import write_record  # this script's sibling (run as a file, its directory is on sys.path)

from talbench.bench.stats import Summary

CLI = [sys.executable, "-m", "talbench.bench.cli"]


def measured_cli(argv: list[str]) -> dict[str, Any]:
    """Run ``talbench argv`` and sample the CLI process itself (not its children: the lab's
    agents, fio, etcd) every 0.2 s: its own CPU seconds and its peak RSS (VmHWM).  Its output
    goes to files, not pipes: a pipe nobody reads while it runs fills at 64 KiB and stops it."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([*CLI, *argv], stdout=out, stderr=err, text=True)
        watched = psutil.Process(process.pid)
        cpu_s = peak_kb = 0.0
        while process.poll() is None:
            try:
                times = watched.cpu_times()
                cpu_s = times.user + times.system
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, float(line.split()[1]))
            except (psutil.Error, OSError):
                pass
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {
        "rc": process.returncode,
        "wall_s": time.monotonic() - started,
        "cpu_s": cpu_s,
        "max_rss_mb": peak_kb / 1024,
        "stdout": stdout[-4000:],
        "stderr": stderr[-4000:],
    }


def cp_rtt_p50_ms(doc: dict[str, Any]) -> dict[str, float]:
    control = {n["name"] for n in doc["nodes"] if n["role"] == "control-plane"}
    pooled: dict[str, list[float]] = {}
    for r in doc["results"]:
        if r["probe"] == "rtt" and r["node"] in control and r["peer"] in control:
            pair = "-".join(sorted((r["node"], r["peer"])))
            pooled.setdefault(pair, []).extend(ns / 1e6 for ns in r["data"].get("samples_ns") or ())
    return {pair: Summary.of(samples).p50 for pair, samples in sorted(pooled.items()) if samples}


def lab_run(workers: int, only: str, quick: bool) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="tb-bench-scale-", dir="/var/tmp"))
    argv = ["run", "--scenario", "control-plane", "--target", "lab", "--workers", str(workers), "--out", str(out)]
    argv += ["--format", "json"] + (["--only", only] if only else []) + (["--quick"] if quick else [])
    usage = measured_cli(argv)
    runs = list(out.glob("*/run.json"))
    if usage["rc"] not in (0, 1) or not runs:
        raise SystemExit(f"run with {workers} workers failed (exit {usage['rc']}): {usage['stderr']}")
    doc = json.loads(runs[0].read_text())
    verdicts: dict[str, int] = {}
    for v in doc["verdicts"]:
        verdicts[v["status"]] = verdicts.get(v["status"], 0) + 1
    cp = [v for v in doc["verdicts"] if v["check"] == "control-plane-rtt"]
    return {
        "nodes": 3 + workers,
        "exit_code": usage["rc"],
        "wall_s": round(usage["wall_s"], 1),
        "coordinator_cpu_s": round(usage["cpu_s"], 1),
        "coordinator_peak_rss_mb": round(usage["max_rss_mb"], 1),
        "run_json_mb": round(runs[0].stat().st_size / 1e6, 2),
        "verdicts": verdicts,
        "control_plane_rtt": {v["subject"]: v["status"] for v in cp},
        "control_plane_rtt_p50_ms": cp_rtt_p50_ms(doc),
        "run_dir": str(runs[0].parent),
    }


def plan(workers: int) -> dict[str, Any]:
    started = time.monotonic()
    argv = ["run", "--scenario", "control-plane", "--target", "lab", "--workers", str(workers), "--dry-run"]
    done = subprocess.run([*CLI, *argv, "--format", "json"], capture_output=True, text=True, timeout=600, check=True)
    doc = json.loads(done.stdout)
    rtt = next(p for p in doc["probes"] if p["probe"] == "rtt")
    return {
        "nodes": doc["nodes"]["total"],
        "plan_s": round(time.monotonic() - started, 2),
        "rtt_results": rtt["results"],
        "rtt_streams_per_node_max": rtt["streams_per_node"]["max"],
        "rtt_packets_per_s_per_node_max": rtt["packets_per_s_per_node"]["max"],
        "expected_duration_s": doc["expected_duration_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,37", help="lab shapes to run: workers beside 3 control planes")
    parser.add_argument("--plan-workers", default="1,37,997", help="shapes to plan only (--dry-run)")
    parser.add_argument("--only", default="", help="checks or probes (default: the whole scenario)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/bench/scale.json"))
    args = parser.parse_args()
    runs = [lab_run(int(w), args.only, args.quick) for w in args.workers.split(",") if w]
    plans = [plan(int(w)) for w in args.plan_workers.split(",") if w]
    print(
        f"{'nodes':>5} {'exit':>4} {'wall s':>7} {'coord cpu s':>11} {'peak RSS MB':>11} {'run.json MB':>11}  CP RTT p50 ms"
    )
    for r in runs:
        p50 = ", ".join(f"{k} {v:.3f}" for k, v in r["control_plane_rtt_p50_ms"].items())
        print(
            f"{r['nodes']:>5} {r['exit_code']:>4} {r['wall_s']:>7} {r['coordinator_cpu_s']:>11} "
            f"{r['coordinator_peak_rss_mb']:>11} {r['run_json_mb']:>11}  {p50}  {r['control_plane_rtt']}"
        )
    print(f"{'nodes':>5} {'plan s':>7} {'rtt results':>11} {'streams/node':>12} {'pkt/s/node':>10} {'expected s':>10}")
    for p in plans:
        print(
            f"{p['nodes']:>5} {p['plan_s']:>7} {p['rtt_results']:>11} {p['rtt_streams_per_node_max']:>12} "
            f"{p['rtt_packets_per_s_per_node_max']:>10.0f} {p['expected_duration_s']:>10.0f}"
        )
    write_record(
        args.out,
        "talbench/bench-scale/v1",
        {"load_after": Path("/proc/loadavg").read_text().split()[:3], "runs": runs, "plans": plans},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
