"""A run's agent TLS for real: the agent process serves HTTPS with the run's certificate, and
the coordinator's client trusts that run's CA alone (bench/agent_tls.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from talbench.bench.agent_client import AgentClient, AgentError
from talbench.bench.agent_tls import SERVER_NAME, client_context, make_agent_tls
from tests.agents.helpers import TOKEN, free_port

pytestmark = pytest.mark.processes


@pytest.fixture
def tls_agent(tmp_path: Path):
    """A real agent process on 127.0.0.1 serving its API over HTTPS with run-1's certificate."""
    tls = make_agent_tls("run-1")
    files = {"token": TOKEN.encode(), "tls.crt": tls.cert, "tls.key": tls.key}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    port = free_port()
    argv = ["--listen", f"127.0.0.1:{port}", "--token-file", str(tmp_path / "token"), "--node", "cp1"]
    argv += ["--tls-cert-file", str(tmp_path / "tls.crt"), "--tls-key-file", str(tmp_path / "tls.key")]
    argv += ["--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen([sys.executable, "-m", "talbench.agents", *argv], stderr=subprocess.PIPE, text=True)
    try:
        yield tls, port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _health(tls_context, port: int, *, name: str | None = SERVER_NAME, scheme: str = "https") -> dict:
    """The agent's health as the coordinator asks it, retried while the agent starts (10 s)."""
    connector = aiohttp.TCPConnector(ssl=tls_context) if tls_context else aiohttp.TCPConnector()
    async with aiohttp.ClientSession(connector=connector) as session:
        client = AgentClient("cp1", session, f"{scheme}://127.0.0.1:{port}", TOKEN, tls_server_name=name)
        for _ in range(100):
            try:
                return await client.health()
            except AgentError as exc:
                if "Connect" not in str(exc) or "certificate" in str(exc):
                    raise
                await asyncio.sleep(0.1)
        return await client.health()


async def test_the_coordinator_reaches_an_agent_over_https_checked_against_the_runs_ca(tls_agent):
    tls, port, _ = tls_agent
    health = await _health(client_context(tls), port)
    assert health["node"] == "cp1" and health["status"] == "ok"
    # the token-guarded API works the same over TLS
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(tls))) as session:
        client = AgentClient("cp1", session, f"https://127.0.0.1:{port}", TOKEN, tls_server_name=SERVER_NAME)
        assert (await client.facts())["node"] == "cp1"


async def test_an_agent_with_another_runs_certificate_is_refused_with_a_one_line_reason(tls_agent):
    tls, port, _ = tls_agent
    await _health(client_context(tls), port)  # it is up
    with pytest.raises(AgentError, match="certificate is not the run's") as caught:
        await _health(client_context(make_agent_tls("run-2")), port)
    assert len(str(caught.value).splitlines()) == 1


async def test_the_name_is_checked_not_just_the_ca(tls_agent):
    tls, port, _ = tls_agent
    await _health(client_context(tls), port)
    with pytest.raises(AgentError, match="certificate is not the run's"):
        await _health(client_context(tls), port, name=None)  # 127.0.0.1 is not in the certificate


async def test_plain_http_gets_no_answer_from_a_tls_agent(tls_agent):
    tls, port, _ = tls_agent
    await _health(client_context(tls), port)
    with pytest.raises(AgentError):
        await _health(None, port, name=None, scheme="http")


def test_each_run_has_its_own_ca_and_no_ca_key_is_kept():
    one, two = make_agent_tls("run-1"), make_agent_tls("run-1")
    assert one.ca_cert != two.ca_cert and one.key != two.key
    assert "PRIVATE KEY" not in one.ca_cert.decode() and "PRIVATE KEY" not in repr(one)
