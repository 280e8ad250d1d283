"""The by-hand side of bench_wireguard.py (not a benchmark of its own: ``make bench`` runs
``bench_*.py`` only): a WireGuard tunnel built with wireguard-go, wg and ip directly in two lab
namespaces, iperf3 and ping over the plain path and through it, and the CPU group both tools'
processes share while the benchmark runs.

Why one CPU group: the kernel's autogroup scheduling (``kernel.sched_autogroup_enabled``) gives
every session in the root CPU cgroup an equal share whatever its processes' nice values.  The lab
starts each agent in a session of its own (and the agent's iperf3 and wireguard-go with it),
while processes started by hand would sit in the benchmark's session: the two tools would then
compete with the host's other work (a niced build is a session of its own, or several) with
different weights, and the comparison would measure the scheduler.  Inside one non-root CPU
cgroup no autogroup applies: talbench's processes and the by-hand ones are scheduled alike.  The
group's weight (``--cpu-weight``, in sessions) is what a nice value no longer gives across
sessions: a niced build on the same host takes less from the benchmark, for both tools alike.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from talbench.bench.lab.state import LabState
from talbench.bench.stats import Summary

HAND_ADDRESSES = ("198.19.0.1", "198.19.0.2")  # by hand: another /30 of the benchmarking range
HAND_PORT = 51999
HAND_IPERF_PORT = 5399
TUNNEL_MTU = 1420  # talbench's default test link MTU (TunnelLink.mtu)
CPU_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


def sh(argv: list[str], *, timeout: float = 30, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


# -- one CPU group for the benchmark and everything it starts ---------------------------------


class CpuGroup:
    """This process (and so the lab's agents and every tool started later) in one CPU cgroup of
    its own; ``leave`` moves it back and removes the group once its other members are gone."""

    def __init__(self, name: str, weight: float = 1.0) -> None:
        self.path: Path | None = None
        self.note = ""
        for root in (CPU_V1, CGROUP_V2):
            if not (root / "cgroup.procs").exists():
                continue
            if root == CGROUP_V2 and "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                continue
            # a session's weight is cgroup v1's 1024 shares, v2's 100: ``weight`` times that
            knob, value = ("cpu.shares", int(1024 * weight)) if root == CPU_V1 else ("cpu.weight", int(100 * weight))
            try:
                (root / name).mkdir()
                (root / name / knob).write_text(str(max(1, min(value, 10_000 if root == CGROUP_V2 else 262_144))))
                (root / name / "cgroup.procs").write_text(str(os.getpid()))
            except OSError as exc:
                self.note = f"no CPU group ({exc}): autogroup weights may differ"
                if (root / name).exists():
                    (root / name).rmdir()
                continue
            self.path, self.root = root / name, root
            self.note = f"one CPU cgroup for both tools ({self.path}, {knob} {value})"
            return
        self.note = self.note or "no CPU cgroup controller found: autogroup weights may differ"

    def leave(self, wait: float = 10.0) -> None:
        if self.path is None:
            return
        (self.root / "cgroup.procs").write_text(str(os.getpid()))
        give_up = time.monotonic() + wait
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.1)


# -- the tunnel -------------------------------------------------------------------------------


def tunnel_up(state: LabState, tag: str) -> list[tuple[str, str, subprocess.Popen[bytes]]]:
    """wireguard-go + wg + ip in both namespaces; returns (namespace, link, process) to tear down."""
    nodes = state.nodes[:2]
    keys = []
    for _ in nodes:
        private = sh(["wg", "genkey"]).strip()
        keys.append((private, sh(["wg", "pubkey"], stdin=private + "\n").strip()))
    made: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    try:
        for i, node in enumerate(nodes):
            name = f"bh{tag}{i}"
            proc = subprocess.Popen(
                in_ns(node.namespace, "wireguard-go", "-f", name),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"},
            )
            made.append((node.namespace, name, proc))
            give_up = time.monotonic() + 10
            while not Path(f"/var/run/wireguard/{name}.sock").exists():
                if time.monotonic() > give_up or proc.poll() is not None:
                    raise RuntimeError(f"wireguard-go {name} did not start")
                time.sleep(0.05)
        for i, (ns, name, _) in enumerate(made):
            other = 1 - i
            settings = ["private-key", "/dev/stdin", "listen-port", str(HAND_PORT), "peer", keys[other][1]]
            settings += [
                "endpoint",
                f"{nodes[other].address}:{HAND_PORT}",
                "allowed-ips",
                f"{HAND_ADDRESSES[other]}/32",
            ]
            sh(in_ns(ns, "wg", "set", name, *settings), stdin=keys[i][0] + "\n")
            sh(in_ns(ns, "ip", "address", "add", f"{HAND_ADDRESSES[i]}/30", "dev", name))
            sh(in_ns(ns, "ip", "link", "set", "dev", name, "mtu", str(TUNNEL_MTU), "up"))
    except BaseException:
        tunnel_down(made)
        raise
    return made


def tunnel_down(made: Sequence[tuple[str, str, subprocess.Popen[bytes]]]) -> None:
    for ns, name, proc in made:
        sh(in_ns(ns, "ip", "link", "del", "dev", name), check=False)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- iperf3 and ping ----------------------------------------------------------------------------


def received_bps(report: Mapping[str, Any]) -> float:
    """The receiver's rate from an iperf3 client's JSON report: ``end.sum_received`` (TCP), else
    ``end.sum`` (UDP, and iperf3 before 3.11 in some modes); an ``error`` is raised (iperf3 3.12
    puts "Connection refused" there and exits 0)."""
    if report.get("error"):
        raise RuntimeError(f"iperf3: {report['error']}")
    end = report.get("end") or {}
    for key in ("sum_received", "sum"):
        figure = (end.get(key) or {}).get("bits_per_second")
        if isinstance(figure, (int, float)):
            return float(figure)
    raise RuntimeError(f"iperf3 report without a receiver figure (end has {sorted(end)})")


def iperf(server_ns: str, client_ns: str, host: str, duration: int, omit: int) -> float:
    """One TCP transfer as talbench runs it (``-t``, ``-O``, one stream); the receiver's rate."""
    server = subprocess.Popen(
        in_ns(server_ns, "iperf3", "-s", "-1", "-B", host, "-p", str(HAND_IPERF_PORT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        argv = ["iperf3", "-J", "-c", host, "-p", str(HAND_IPERF_PORT), "-t", str(duration), "-P", "1"]
        argv += ["-O", str(omit)] if omit else []
        for _ in range(100):
            done = subprocess.run(in_ns(client_ns, *argv), capture_output=True, text=True, timeout=duration + omit + 30)
            try:
                report = json.loads(done.stdout[done.stdout.find("{") :])
            except ValueError:
                report = {"error": (done.stderr or done.stdout).strip()[-300:] or f"exit {done.returncode}"}
            if "refused" in str(report.get("error", "")):
                time.sleep(0.1)  # the server is not listening yet (iperf3 3.12: exit status 0)
                continue
            return received_bps(report)
        raise RuntimeError("iperf3 server by hand never listened")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def ping(ns: str, host: str, count: int, interval: float) -> list[float]:
    done = subprocess.run(
        in_ns(ns, "ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", host),
        capture_output=True,
        text=True,
        timeout=count * interval * 3 + 20,
    )
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", done.stdout)]


def hand_round(state: LabState, duration: int, omit: int, count: int, interval: float, tag: str) -> dict[str, float]:
    a, b = state.nodes[0], state.nodes[1]
    made = tunnel_up(state, tag)
    try:
        # handshake and warm-up, as talbench's RTT warm-up packets
        sh(in_ns(a.namespace, "ping", "-n", "-c", "10", "-i", "0.01", "-W", "1", HAND_ADDRESSES[1]), check=False)
        plain_rtt = ping(a.namespace, b.address, count, interval)
        tunnel_rtt = ping(a.namespace, HAND_ADDRESSES[1], count, interval)
        plain = iperf(b.namespace, a.namespace, b.address, duration, omit)
        tunnel = iperf(b.namespace, a.namespace, HAND_ADDRESSES[1], duration, omit)
    finally:
        tunnel_down(made)
    if min(len(plain_rtt), len(tunnel_rtt)) < count // 2:
        raise RuntimeError(f"ping by hand: {len(plain_rtt)} and {len(tunnel_rtt)} replies of {count}")
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
