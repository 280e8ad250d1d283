"""What a probe is, agent side: one declared unit.

A probe's folder under ``talbench.agents.probes`` declares, in its ``probe`` module, a
module-level ``PROBE`` (``ProbeDeclaration``, listed in agents/probes/registry.py): its name, its
parameters (one ``Params`` model, see agents/params.py), the jobs the agent runs for it, the
external tools it drives and the Linux capabilities it needs.  The agent's job table, the coordinator's driver table, the tools the Makefile and the image
install and the DaemonSet's capabilities are all read from (or checked against) these
declarations; nothing else lists probes.

A job measures and returns raw, JSON-able results.  It knows nothing of Kubernetes, the
coordinator or reports.  Its parameters are validated from the untrusted request body by the
declared model (``ProbeParamError``, HTTP 400, for anything out of range) and it states its time
limit: the agent cancels a job that runs past it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from talbench.agents.params import ParamError, Params, validate

ProbeParamError = ParamError  # parameters missing, malformed or out of bounds (HTTP 400)


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


J = TypeVar("J", bound=BaseModel)  # a Params model, or a RootModel over a union of them (a job's actions)
J_co = TypeVar("J_co", bound=BaseModel, covariant=True)


class Probe(Protocol[J_co]):
    """What the agent's job table holds: one runnable kind of job (``AgentJob`` is one), over its
    parameters ``J_co``.  The table holds jobs of many parameter types as ``Probe[BaseModel]``:
    what it hands back (``time_limit``, ``run``) is what ``parse`` made, and the job checks so."""

    @property
    def name(self) -> str: ...

    def parse(self, params: Mapping[str, object]) -> J_co:
        """Validated, bounded parameters (a frozen record); ProbeParamError otherwise."""

    def time_limit(self, params: BaseModel) -> float:
        """Seconds after which the agent cancels the job."""

    async def run(self, params: BaseModel, ctx: ProbeContext) -> dict[str, Any]:
        """Measure and return the raw result (JSON-able)."""


@dataclass(frozen=True)
class AgentJob(Generic[J]):
    """One kind of job an agent runs for a probe.  Its name is the probe's name, or
    ``probe.part`` when a probe has several (``wireguard.iperf``, ``etcd.member``)."""

    name: str
    params: type[J]
    measure: Callable[[J, ProbeContext], Awaitable[dict[str, Any]]]
    limit: Callable[[J], float]

    def parse(self, params: Mapping[str, object]) -> J:
        return validate(self.params, params)

    def typed(self, params: BaseModel) -> J:
        """``params`` as this job's own (what ``parse`` made): anything else is a bug in the caller."""
        if not isinstance(params, self.params):
            raise TypeError(f"job {self.name!r} takes {self.params.__name__}, not {type(params).__name__}")
        return params

    def time_limit(self, params: BaseModel) -> float:
        return self.limit(self.typed(params))

    async def run(self, params: BaseModel, ctx: ProbeContext) -> dict[str, Any]:
        return await self.measure(self.typed(params), ctx)


@dataclass(frozen=True)
class Tool:
    """An external program a probe drives: the binary, and where it comes from: the Debian
    package that ships it, or (``built_by``) the Makefile target that builds it, at ``version``,
    when Debian's is not the one to measure with (etcd: Talos' release, not bookworm's 3.4)."""

    binary: str
    debian_package: str = ""
    built_by: str = ""  # the make target that builds and installs it (agents/build/)
    version: str = ""  # the version it builds (a built tool only)

    def __post_init__(self) -> None:
        if bool(self.debian_package) == bool(self.built_by):
            raise ValueError(f"tool {self.binary!r}: name either its Debian package or the make target that builds it")
        if bool(self.version) != bool(self.built_by):
            raise ValueError(f"tool {self.binary!r}: a built tool names its version, a Debian one does not")


@dataclass(frozen=True)
class ProbeDeclaration:
    """One probe: everything the rest of talbench needs to know to run, install and document it."""

    name: str
    summary: str
    settings: type[Params]  # the scenario's ``probes.<name>`` block, defaults and bounds
    jobs: tuple[Probe[BaseModel], ...] = ()
    tools: tuple[Tool, ...] = ()
    capabilities: tuple[str, ...] = ()  # Linux capabilities its jobs need (NET_ADMIN, NET_RAW)

    def __post_init__(self) -> None:
        for job in self.jobs:
            if job.name != self.name and not job.name.startswith(self.name + "."):
                raise ValueError(
                    f"job {job.name!r} of probe {self.name!r} must be named {self.name!r} or {self.name}.<part>"
                )
