"""Helpers for agent tests: real agents on 127.0.0.1, an aiohttp TestServer per agent, on a port
number free for both TCP (the API) and UDP (the echo responder)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from talbench.agents.app import AgentConfig

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    """A port number currently free on 127.0.0.1 for both UDP and TCP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


def dead_udp_port() -> int:
    """A UDP port with nobody listening (ICMP port unreachable on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return udp.getsockname()[1]


@dataclass(frozen=True)
class Agent:
    config: AgentConfig
    app: Any
    client: TestClient

    @property
    def port(self) -> int:
        return self.config.listen_port

    async def submit(self, probe: str, params: Mapping[str, Any], run_id: str = "run-1") -> dict[str, Any]:
        body = {"schema": 1, "run_id": run_id, "probe": probe, "params": dict(params)}
        response = await self.client.post("/v1/jobs", json=body, headers=AUTH)
        payload = await response.json()
        assert response.status == 202, payload
        return payload["job"]

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/jobs/{job_id}", headers=AUTH)
        assert response.status == 200
        return (await response.json())["job"]

    async def wait(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        give_up = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] != "running":
                return job
            assert time.monotonic() < give_up, f"job {job_id} still running after {timeout}s"
            await asyncio.sleep(0.02)


StartAgent = Callable[..., Awaitable[Agent]]  # the ``start_agent`` fixture (conftest.py)


def stop_agent_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: bounded, whatever state the agent is in."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def wait_agent_healthy(client: Any, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until ``client.health()`` answers; the agent's last stderr when it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"agent exited: {process.stderr.read().decode()[-500:] if process.stderr else ''}")
        try:
            await client.health()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def health_over_unix(path: Path, timeout: float = 10.0) -> dict:
    give_up = time.monotonic() + timeout
    while True:
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session:
                async with session.get("http://agent/v1/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
                    return await response.json()
        except (aiohttp.ClientError, OSError):
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.1)
