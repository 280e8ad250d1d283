"""What a probe is, agent side.

A probe measures and returns raw, JSON-able results.  It knows nothing of Kubernetes, the
coordinator or reports.  Every probe parses its own parameters into a bounded frozen record
(raising ProbeParamError for anything out of range) and states its time limit: the agent cancels
a job that runs past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Protocol


class ProbeParamError(ValueError):
    """Parameters that are missing, malformed or out of bounds (HTTP 400)."""


class ProbeUnavailable(RuntimeError):
    """The probe cannot run on this node (missing tool, no permission); the message says which."""


class CleanupRegistry(Protocol):
    """Things a probe leaves running between jobs (an etcd member, a tunnel, an iperf3 server),
    registered under the run id.  The agent releases them on DELETE /v1/runs/{run_id}, when the
    run's time runs out and on shutdown; a probe releases one itself with ``release``."""

    def add(self, run_id: str, name: str, release: Callable[[], Awaitable[None]]) -> None: ...

    async def release(self, run_id: str, name: str | None = None) -> None: ...

    def names(self, run_id: str) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class ProbeContext:
    node: str  # this agent's node name
    run_id: str  # the coordinator's run id: label everything created with it
    data_dir: Path  # this node's data directory (scratch goes below it)
    listen_host: str  # the node address the agent listens on
    listen_port: int
    cleanup: CleanupRegistry


class Probe(Protocol):
    name: str

    def parse(self, params: Mapping[str, Any]) -> Any:
        """Validated, bounded parameters (a frozen dataclass); ProbeParamError otherwise."""

    def time_limit(self, params: Any) -> float:
        """Seconds after which the agent cancels the job."""

    async def run(self, params: Any, ctx: ProbeContext) -> dict[str, Any]:
        """Measure and return the raw result (JSON-able)."""
