"""Two real agents, each in a network namespace of its own (tb-<random>-a, -b) joined by a veth
pair created directly inside the namespaces.  The test reaches each agent over a unix socket;
the agents reach each other at 10.250.0.1 / 10.250.0.2.  Everything is removed in ``finally``:
agents (SIGTERM, then SIGKILL), namespaces; whatever wireguard-go or iperf3 a probe left would
die with its agent (parent-death signal) -- the tests check that nothing was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from talbench.bench.agent_client import AgentClient

TOKEN = "netns-test-token-0123456789"
PORT = 8946
ADDRESSES = {"a": "10.250.0.1", "b": "10.250.0.2"}


def require_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    missing = [tool for tool in ("ip", *tools) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tool(s): {', '.join(missing)}")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class NetnsAgents:
    prefix: str
    root: Path
    namespaces: dict[str, str]
    processes: dict[str, subprocess.Popen]
    clients: dict[str, AgentClient] = field(default_factory=dict)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def address(self, node: str) -> str:
        return ADDRESSES[node]

    def data_dir(self, node: str) -> Path:
        return self.root / node

    def pid(self, node: str) -> int:
        return self.processes[node].pid

    def descendants(self, node: str) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid(node)).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def exec(self, node: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespaces[node], *args], capture_output=True, text=True, timeout=timeout
        )

    def links(self, node: str) -> str:
        return self.exec(node, "ip", "-o", "link", "show").stdout


async def _wait_healthy(client: AgentClient, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}")
        try:
            await client.health()
            return
        except Exception:
            if time.monotonic() >= give_up:
                raise
            await asyncio.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def netns_agents(tmp_path: Path) -> AsyncIterator[NetnsAgents]:
    prefix = f"tb-{secrets.token_hex(3)}"
    namespaces = {node: f"{prefix}-{node}" for node in ADDRESSES}
    created: list[str] = []
    processes: dict[str, subprocess.Popen] = {}
    env = NetnsAgents(prefix, tmp_path, namespaces, processes)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    try:
        for ns in namespaces.values():
            ip("netns", "add", ns)
            created.append(ns)
        a, b = namespaces["a"], namespaces["b"]
        ip("-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for node, dev in (("a", "va"), ("b", "vb")):
            ns = namespaces[node]
            ip("-n", ns, "address", "add", f"{ADDRESSES[node]}/24", "dev", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        for node, ns in namespaces.items():
            data = tmp_path / node
            data.mkdir()
            log = open(tmp_path / f"agent-{node}.log", "wb")
            processes[node] = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-m",
                    "talbench.agents",
                    "--listen",
                    f"{ADDRESSES[node]}:{PORT}",
                    "--token-file",
                    str(token_file),
                    "--unix",
                    str(tmp_path / f"{node}.sock"),
                    "--node",
                    node,
                    "--data-dir",
                    str(data),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
        for node in namespaces:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / f"{node}.sock")))
            env.sessions.append(session)
            env.clients[node] = AgentClient(node, session, "http://agent", TOKEN, request_timeout=10)
        for node in namespaces:
            await _wait_healthy(env.clients[node], processes[node])
        yield env
    finally:
        for session in env.sessions:
            await session.close()
        for proc in processes.values():
            _stop(proc)
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def agent_log(env: NetnsAgents, node: str) -> str:
    path = env.root / f"agent-{node}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def processes_named(name: str, marker: str) -> list[psutil.Process]:
    """Live processes called ``name`` whose command line holds ``marker``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == name and marker in " ".join(proc.info["cmdline"] or ()):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found
