"""The one small interface both dispatchers implement: the lab's (bench.dispatch.lab: agents in
network namespaces on this host) and the Kubernetes one (bench.dispatch.kube: a DaemonSet).

A dispatcher deploys agents for a run and yields a Fleet: the nodes found, a client for each
node's agent and a line saying what its teardown waits for.  Leaving the context tears down; a
teardown that cannot finish within its bound, after a body that finished, raises LeftBehind:
what is left, as data, with the command that removes it (exit 3, reported after the results).
Only the Kubernetes dispatcher talks to the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from talbench.agents import wire
from talbench.bench.agent_client import AgentClient
from talbench.bench.errors import CouldNotRun
from talbench.bench.model import Node, RunRecord
from talbench.bench.report.history import Kept


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
    # what leaving the deploy context does and waits for (the progress line during teardown)
    teardown: str = "removing what the run created"

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


@dataclass(frozen=True)
class Leftovers:
    """What a run's teardown could not remove within its bound, and the command that removes it."""

    run_id: str
    what: tuple[str, ...]  # "namespace talbench-RUN (still terminating)", ...
    clean_command: str  # talbench clean --run-id RUN [--kubeconfig ...] [--context ...] [--namespace ...]
    waited: float  # seconds the teardown waited

    def line(self) -> str:
        return (
            f"the run's teardown did not finish within {self.waited:g}s: "
            f"{'; '.join(self.what)} is left; remove it with: {self.clean_command}"
        )


class LeftBehind(CouldNotRun):
    """A teardown that could not finish after a run that did (exit 3).  The dispatcher raises it
    with ``leftovers``; run() raises it again with the finished run's ``record`` attached."""

    def __init__(self, leftovers: Leftovers, record: RunRecord | None = None) -> None:
        super().__init__(leftovers.line())
        self.leftovers = leftovers
        self.record = record


class Dispatcher(Protocol):
    name: str

    async def discover(self) -> tuple[Node, ...]:
        """The nodes a run would measure, deploying nothing (``talbench run --dry-run``)."""

    def deploy(
        self, run_id: str, *, agents_for: Callable[[Sequence[Node]], frozenset[str]] | None = None
    ) -> AbstractAsyncContextManager[Fleet]:
        """Deploy (or find) agents, wait until they are ready (bounded), yield the Fleet, and in
        ``finally`` remove everything created for ``run_id`` (waiting, bounded, even when
        cancelled).  What cannot be removed in time after a body that finished: LeftBehind.
        ``agents_for(nodes)`` names the nodes the run needs agents on (None: every node); a
        dispatcher whose agents exist anyway (the lab's) may have more."""


@runtime_checkable
class KeepsSummaries(Protocol):
    """A dispatcher that keeps each run's JSON summary where later runs find it (``run
    --keep-results N``; the Kubernetes one, in ConfigMaps).  The CLI checks for it with
    ``isinstance``."""

    async def keep_summary(self, run_id: str, summary: Mapping[str, object], *, keep: int) -> list[str]:
        """Store ``summary`` and prune the oldest beyond ``keep``; returns what was pruned."""

    async def kept_summaries(self) -> tuple[Kept, ...]:
        """The summaries earlier runs kept, newest first."""
