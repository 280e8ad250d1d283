"""Fixture ``start_agent``: real agents on 127.0.0.1, closed at the end of the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from talbench.agents.app import AgentConfig, make_app
from talbench.agents.probe import Probe
from talbench.agents.probes.registry import default_probes
from tests.agents.helpers import TOKEN, Agent, StartAgent, free_port


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[StartAgent]:
    clients: list[TestClient] = []

    async def start(
        probes: Mapping[str, Probe] | None = None,
        *,
        node: str = "n1",
        facts: Callable[[], dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> Agent:
        data_dir = tmp_path / node
        data_dir.mkdir(exist_ok=True)
        last: OSError | None = None
        for _ in range(5):  # another process may grab the port in between
            port = free_port()
            config = AgentConfig(
                node=node, token=TOKEN, data_dir=data_dir, listen_host="127.0.0.1", listen_port=port, **overrides
            )
            app = make_app(config, default_probes() if probes is None else probes, facts=facts)
            client = TestClient(TestServer(app, host="127.0.0.1", port=port))
            try:
                await client.start_server()
            except OSError as exc:
                last = exc
                await client.close()
                continue
            clients.append(client)
            return Agent(config, app, client)
        raise RuntimeError(f"could not start an agent: {last}")

    try:
        yield start
    finally:
        for client in clients:
            await client.close()
