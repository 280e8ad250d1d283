"""Tiny test-only probes for the agent's job lifecycle: sleep (ignores its time limit), fail (in
several ways), keep (leaves things for the run's cleanup); ``probes()`` gives the three by name."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from talbench.agents.probe import ProbeContext, ProbeParamError, ProbeUnavailable


@dataclass(frozen=True)
class SleepParams:
    seconds: float
    limit: float


class SleepProbe:
    """Sleeps ``seconds`` whatever its time limit says (to exercise the agent's enforcement)."""

    name = "sleep"

    def parse(self, params: Mapping[str, Any]) -> SleepParams:
        seconds, limit = params.get("seconds", 0.0), params.get("limit", 5.0)
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
            raise ProbeParamError("seconds must be between 0 and 60")
        return SleepParams(float(seconds), float(limit))

    def time_limit(self, params: SleepParams) -> float:
        return params.limit

    async def run(self, params: SleepParams, ctx: ProbeContext) -> dict[str, Any]:
        await asyncio.sleep(params.seconds)
        return {"slept": params.seconds, "node": ctx.node}


class FailProbe:
    name = "fail"

    def parse(self, params: Mapping[str, Any]) -> str:
        return str(params.get("how", "boom"))

    def time_limit(self, params: str) -> float:
        return 5.0

    async def run(self, params: str, ctx: ProbeContext) -> dict[str, Any]:
        if params == "unavailable":
            raise ProbeUnavailable("fio not found on PATH\ninstall it")
        if params == "not-json":
            return {"value": object()}
        raise RuntimeError("boom\nsecond line")


class KeepProbe:
    """Leaves things running for the run (like an etcd member) via the cleanup registry."""

    name = "keep"

    def __init__(self) -> None:
        self.released: list[str] = []

    def parse(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(params.get("things", ()))

    def time_limit(self, params: tuple[str, ...]) -> float:
        return 5.0

    async def run(self, params: tuple[str, ...], ctx: ProbeContext) -> dict[str, Any]:
        for thing in params:
            ctx.cleanup.add(ctx.run_id, thing, self._releaser(ctx.run_id, thing))
        return {"kept": list(params)}

    def _releaser(self, run_id: str, thing: str):
        async def release() -> None:
            if thing == "broken":
                raise OSError("cannot stop broken")
            self.released.append(f"{run_id}/{thing}")

        return release


def probes(keep: KeepProbe | None = None) -> dict[str, Any]:
    found = [SleepProbe(), FailProbe(), keep or KeepProbe()]
    return {p.name: p for p in found}
