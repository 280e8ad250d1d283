"""The lab's add-on point: how something outside the process lab (talbench's test bed: agents in
containers, a Kubernetes control plane) plugs into ``up`` and ``status``, and what it leaves
behind so that ``down`` and the leftover sweep remove it without knowing what it is.

    AgentLauncher   starts a node's agent instead of a plain process (``up(..., launcher=)``)
    LabAddOn        runs once the agents are ready (``up(..., addons=)``) and says how it is
    Leftovers       an add-on's record: pids to stop in order, a teardown command, paths

Leftovers are recorded in lab.json and, because a lab's directory may be gone when its leftovers
are swept, next to the lab's entry in the host-wide index (bench/lab/state.py).  ``down`` stops
the recorded pids (last record first, each pid only while it is still a process of the lab's
namespaces), runs the teardown command (bounded; it may print ``{"removed": {kind: [item, ...]}}``
on its last line), then sweeps the lab's namespaces and removes the paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabNode, LabState, Leftovers

__all__ = ["AddOnStatus", "AgentLauncher", "LabAddOn", "Leftovers", "Record"]

Record = Callable[[Leftovers], None]  # puts (or replaces, by name) an add-on's leftovers on record at once


@runtime_checkable
class AgentLauncher(Protocol):
    """Starts each node's agent (``up`` starts a process in the node's namespace without one)."""

    @property
    def socket_name(self) -> str:
        """The agent's unix socket, relative to the node's directory."""
        ...

    @property
    def ready_timeout(self) -> float:
        """How long a small lab's agents get to answer health."""
        ...

    def description(self) -> Mapping[str, Any]:
        """What the agents run from, recorded in lab.json and in a run's metadata."""
        ...

    def leftovers(self, lab_id: str) -> Leftovers:
        """Recorded before the first agent starts."""
        ...

    def start(self, ip: Ip, state: LabState, node: LabNode) -> int:
        """Start ``node``'s agent; its pid."""
        ...


@runtime_checkable
class AddOnStatus(Protocol):
    @property
    def healthy(self) -> bool: ...

    def lines(self) -> list[str]: ...


@runtime_checkable
class LabAddOn(Protocol):
    """Runs on a lab whose agents are ready; ``up`` removes the whole lab if ``up`` raises."""

    @property
    def name(self) -> str: ...

    def up(self, ip: Ip, state: LabState, record: Record) -> None: ...

    def status(self, state: LabState) -> AddOnStatus | None:
        """None when the lab has none of this add-on."""
        ...
