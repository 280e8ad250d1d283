"""Benchmark: talbench's fsync probe next to fio run by hand, back to back, on the same directory.

    .venv/bin/python benchmarks/bench_fsync.py [--rounds 2] [--size 22m] [--dir DIR]

talbench: a real agent process (``python -m talbench.agents``) with DIR as its data directory,
driven by the coordinator's FsyncDriver; the p99 is what the ``fsync.p99`` metric reports.
By hand: the command from the etcd/IBM recipe, ``fio --rw=write --ioengine=sync --fdatasync=1
--directory=DIR/... --size=22m --bs=2300 --name=mytest``, with JSON output to read fio's own
sync percentiles.  Rounds alternate (talbench, fio, talbench, fio ...) so that drift on a shared
disk hits both.  Prints a table and writes results/bench/fsync.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from talbench.agents import devices
from talbench.bench.agent_client import AgentClient
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import NullProgress
from talbench.bench.model import Node, ResultKey, Role, Subject
from talbench.bench.probes.fsync.driver import FsyncDriver, histogram_percentile
from talbench.bench.run import metrics_of

SCHEMA_VERSION = 1


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fio_by_hand(directory: Path, size: str) -> dict[str, Any]:
    work = directory / f"fio-by-hand-{secrets.token_hex(3)}"
    work.mkdir()
    try:
        argv = [
            "fio",
            "--rw=write",
            "--ioengine=sync",
            "--fdatasync=1",
            f"--directory={work}",
            f"--size={size}",
            "--bs=2300",
            "--name=mytest",
            "--output-format=json",
        ]
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=True)
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    job = json.loads(done.stdout[done.stdout.find("{") :])["jobs"][0]
    sync = job["sync"]["lat_ns"]
    return {
        "tool": "fio by hand",
        "p50_ms": sync["percentile"]["50.000000"] / 1e6,
        "p99_ms": sync["percentile"]["99.000000"] / 1e6,
        "p99.9_ms": sync["percentile"]["99.900000"] / 1e6,
        "max_ms": sync["max"] / 1e6,
        "syncs": sync["N"],
        "iops": job["write"]["iops"],
        "seconds": round(seconds, 2),
        "command": " ".join(argv),
    }


async def talbench_fsync(client: AgentClient, size_bytes: int) -> dict[str, Any]:
    driver = FsyncDriver()
    settings = driver.settings({"size": size_bytes, "time_limit": "600s"}, quick=False)
    node = Node("bench", Role.CONTROL_PLANE, "127.0.0.1")
    fleet = Fleet(f"bench-fsync-{int(time.time())}", (node,), {"bench": client})
    started = time.monotonic()
    [measurement] = await driver.run(frozenset({ResultKey("fsync", "bench")}), fleet, settings, NullProgress())
    seconds = time.monotonic() - started
    if not measurement.ok:
        raise SystemExit(f"talbench fsync failed: {measurement.error}")
    metrics = metrics_of({"fsync": driver})
    observed = {
        name: metrics[name].observe(Subject(("bench",)), [measurement], (node,))
        for name in ("fsync.p50", "fsync.p99", "fsync.p999", "fsync.max")
    }
    for name, observation in observed.items():
        if observation.invalid:
            raise SystemExit(f"talbench {name} invalid: {observation.invalid}")
    lat = measurement.data["sync"]["lat"]
    assert observed["fsync.p99"].value == histogram_percentile(lat["bins_ns"], 99) / 1e9
    return {
        "tool": "talbench",
        "p50_ms": observed["fsync.p50"].value * 1e3,
        "p99_ms": observed["fsync.p99"].value * 1e3,
        "p99.9_ms": observed["fsync.p999"].value * 1e3,
        "max_ms": observed["fsync.max"].value * 1e3,
        "syncs": lat["count"],
        "iops": measurement.data["write"]["iops"],
        "seconds": round(seconds, 2),
        "command": " ".join(measurement.data["command"]),
    }


async def run(directory: Path, rounds: int, size_bytes: int, size_text: str) -> list[dict[str, Any]]:
    token = secrets.token_hex(16)
    token_file = directory / ".bench-token"
    token_file.write_text(token)
    data_dir = directory / "agent-data"
    data_dir.mkdir(exist_ok=True)
    port = free_port()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "talbench.agents",
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(token_file),
            "--node",
            "bench",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            client = AgentClient("bench", session, f"http://127.0.0.1:{port}", token)
            deadline = time.monotonic() + 20
            while True:
                try:
                    await client.health()
                    break
                except Exception:
                    if time.monotonic() > deadline or agent.poll() is not None:
                        raise SystemExit("the agent did not come up") from None
                    await asyncio.sleep(0.2)
            for round_no in range(1, rounds + 1):
                for tool in ("talbench", "fio by hand"):
                    row = (
                        await talbench_fsync(client, size_bytes)
                        if tool == "talbench"
                        else await asyncio.to_thread(fio_by_hand, data_dir, size_text)
                    )
                    row["round"] = round_no
                    rows.append(row)
                    print(
                        f"  round {round_no} {tool:12s} p99 {row['p99_ms']:7.2f} ms ({row['syncs']} syncs, {row['seconds']} s)",
                        flush=True,
                    )
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="22m", help="fio size (the recipe's 22m); k/m suffixes are KiB/MiB as in fio")
    parser.add_argument(
        "--dir", type=Path, default=None, help="directory to measure (default: a new one under /var/tmp)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench/fsync.json"))
    args = parser.parse_args()
    if shutil.which("fio") is None:
        print("fio not found: apt-get install fio", file=sys.stderr)
        return 3
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size_bytes = (
        int(args.size[:-1]) * units[args.size[-1].lower()] if args.size[-1].lower() in units else int(args.size)
    )
    own = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="tb-bench-fsync-", dir="/var/tmp")) if own else args.dir
    try:
        device = devices.describe_path(directory)
        print(
            f"fsync benchmark on {directory} ({', '.join(d['name'] + ' ' + d['media'] for d in device['disks']) or device['note']}), "
            f"{args.rounds} rounds of {args.size}"
        )
        rows = asyncio.run(run(directory, args.rounds, size_bytes, args.size))
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)
    summary = {}
    for tool in ("talbench", "fio by hand"):
        mine = [r for r in rows if r["tool"] == tool]
        summary[tool] = {
            key: statistics.median(r[key] for r in mine) for key in ("p50_ms", "p99_ms", "p99.9_ms", "iops")
        }
    print()
    print(
        f"{'tool':14s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99.9 ms':>9s} {'IOPS':>8s}   (medians of {args.rounds} rounds)"
    )
    for tool, figures in summary.items():
        print(
            f"{tool:14s} {figures['p50_ms']:8.3f} {figures['p99_ms']:8.3f} {figures['p99.9_ms']:9.3f} {figures['iops']:8.0f}"
        )
    ratio = (
        summary["talbench"]["p99_ms"] / summary["fio by hand"]["p99_ms"] if summary["fio by hand"]["p99_ms"] else None
    )
    if ratio is not None:
        print(f"talbench p99 / fio p99 = {ratio:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA_VERSION,
        "benchmark": "fsync",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "kernel": platform.release(),
        "device": device,
        "size": args.size,
        "rounds": rows,
        "medians": summary,
        "p99_ratio_talbench_over_fio": ratio,
    }
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
