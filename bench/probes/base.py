"""What a probe is, coordinator side: a driver that orchestrates agents, and the metrics that
turn its raw results into observations.

A driver module under ``talbench.bench.probes`` exposes a module-level ``DRIVER``; the registry
(bench/probes/__init__.py) finds it there.  A driver names the agent-side declaration it drives
(``declaration``: the probe's parameters, jobs, tools and capabilities) or, for a probe that needs
no agent (topology, live etcd), declares its settings model itself.

The plan (bench.plan) computes every expected ResultKey up front from the scenario and the
nodes; a driver is handed the keys of its probe and returns Measurements for them.  Keys it does
not return become no_data: a missing result is never a pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

from talbench.agents.params import Params
from talbench.agents.probe import ProbeDeclaration
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import Metric, NullProgress, ProbeCost, Progress
from talbench.bench.model import CLUSTER_NODE, Measurement, Node, ResultKey
from talbench.bench.probes.declared import from_scenario

__all__ = [
    "DeclaredDriver",
    "Metric",
    "NullProgress",
    "ProbeCost",
    "ProbeDriver",
    "Progress",
    "Span",
    "Spanning",
]

S = TypeVar("S", bound=Params)
S_co = TypeVar("S_co", bound=Params, covariant=True)


class ProbeDriver(Protocol[S_co]):
    """A probe's driver over its declared settings ``S_co``.  The registry holds drivers of many
    settings types as ``ProbeDriver[Params]``: what it hands back in (``run``, ``estimate``,
    ``pair_budget``) is typed ``Params`` and the driver checks it is its own (``DeclaredDriver.typed``)."""

    @property
    def name(self) -> str:
        """The probe's name ("rtt"): the scenario's ``probes.<name>`` and the metrics' prefix."""

    @property
    def declaration(self) -> ProbeDeclaration | None:
        """The agent side it drives; None for a coordinator-only probe."""

    @property
    def settings_model(self) -> type[S_co]:
        """Its declared settings (the scenario block)."""

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> S_co:
        """Validate the scenario's settings for this probe (raise ScenarioError); ``quick``
        scales durations down."""

    async def run(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: Params, progress: Progress
    ) -> list[Measurement]:
        """Measure what ``keys`` ask for; bounded in time; never raises for one agent's failure
        (that agent's keys come back with ok=False or not at all)."""

    def metrics(self) -> Sequence[Metric]:
        """The metrics this probe provides."""

    def estimate(self, keys: frozenset[ResultKey], settings: Params, nodes: Sequence[Node]) -> ProbeCost:
        """What measuring ``keys`` will cost (``--dry-run``), before anything runs."""

    def pair_budget(self, settings: Params) -> int | None:
        """For a pair probe: the most pairs each node measures beyond the control-plane pairs
        (the plan samples the rest: bench/sampling.py); None: every pair."""

    def agent_nodes(self, keys: frozenset[ResultKey], nodes: Sequence[Node]) -> frozenset[str]:
        """The nodes whose agents measuring ``keys`` needs: a run deploys agents only there."""


class Span(Protocol):
    """A spanning measurement under way: its results once the context has exited."""

    @property
    def measurements(self) -> list[Measurement]: ...


@runtime_checkable
class Spanning(Protocol):
    """A driver that can measure through the whole run (node utilisation) instead of a window of
    its own: execution enters ``spanning`` before the other probes and exits it after them."""

    def spanning(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: Params, progress: Progress
    ) -> contextlib.AbstractAsyncContextManager[Span]: ...


class DeclaredDriver(Generic[S]):
    """Settings read from the declaration: the scenario block validated by ``settings_model``,
    then ``quicken`` for ``--quick``.  Drivers subclass it over their settings type and add
    ``measure`` and ``metrics`` (and ``cost``, ``budget`` where they have them); the protocol's
    ``run``, ``estimate`` and ``pair_budget`` check the settings are theirs and call those."""

    name: str
    declaration: ProbeDeclaration | None = None
    settings_model: type[S]

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> S:
        settings = from_scenario(self.settings_model, raw)
        return self.quicken(settings) if quick else settings

    def quicken(self, settings: S) -> S:
        """Shorter durations for demos and tests; the report says the run was quick."""
        return settings

    def typed(self, settings: Params) -> S:
        """``settings`` as this probe's own: anything else is a bug in the caller."""
        if not isinstance(settings, self.settings_model):
            raise TypeError(f"probe {self.name!r} takes {self.settings_model.__name__}, not {type(settings).__name__}")
        return settings

    async def run(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: Params, progress: Progress
    ) -> list[Measurement]:
        return await self.measure(keys, fleet, self.typed(settings), progress)

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: S, progress: Progress
    ) -> list[Measurement]:
        raise NotImplementedError(f"probe {self.name!r} measures nothing")

    def estimate(self, keys: frozenset[ResultKey], settings: Params, nodes: Sequence[Node]) -> ProbeCost:
        return self.cost(keys, self.typed(settings), nodes)

    def cost(self, keys: frozenset[ResultKey], settings: S, nodes: Sequence[Node]) -> ProbeCost:
        return ProbeCost(self.name, note="not estimated")

    def pair_budget(self, settings: Params) -> int | None:
        return self.budget(self.typed(settings))

    def budget(self, settings: S) -> int | None:
        return None

    def agent_nodes(self, keys: frozenset[ResultKey], nodes: Sequence[Node]) -> frozenset[str]:
        """The nodes ``keys`` name, both ends of a pair; every node for a cluster-wide figure; none
        for a coordinator-only probe."""
        names = frozenset(node.name for node in nodes)
        if self.declaration is None or not keys:
            return frozenset()
        if any(key.node == CLUSTER_NODE for key in keys):
            return names
        return frozenset({key.node for key in keys} | {key.peer for key in keys if key.peer}) & names
