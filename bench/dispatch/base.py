"""The one small interface both dispatchers implement: the lab's (bench.dispatch.lab: agents in
network namespaces on this host) and the Kubernetes one (bench.dispatch.kube: a DaemonSet).

A dispatcher deploys agents for a run and yields a Fleet: the nodes found and a client for each
node's agent.  Only the Kubernetes dispatcher talks to the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from talbench.agents import wire
from talbench.bench.agent_client import AgentClient
from talbench.bench.model import Node


@dataclass(frozen=True)
class Fleet:
    run_id: str
    nodes: tuple[Node, ...]
    agents: Mapping[str, AgentClient] = field(hash=False, compare=False)  # node name -> client
    # nodes that exist but whose agent never became ready: name -> reason (their results are no_data)
    unready: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    target: str = "lab"
    agent_port: int = wire.DEFAULT_PORT  # every agent's HTTP (TCP) and RTT echo (UDP) port on its node
    metadata: Mapping[str, object] = field(default_factory=dict, hash=False, compare=False)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


class Dispatcher(Protocol):
    name: str

    async def discover(self) -> tuple[Node, ...]:
        """The nodes a run would measure, deploying nothing (``talbench run --dry-run``)."""

    def deploy(self, run_id: str) -> AbstractAsyncContextManager[Fleet]:
        """Deploy (or find) agents, wait until they are ready (bounded), yield the Fleet, and in
        ``finally`` remove everything created for ``run_id``."""
