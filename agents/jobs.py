"""Probe jobs: each job is an asyncio task running one probe under its time limit.

A job record is a frozen snapshot replaced as the job moves on; the registry keeps running jobs
and a bounded number of finished ones (oldest dropped first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from talbench.agents import wire
from talbench.agents.probe import Probe, ProbeContext, ProbeParamError, ProbeUnavailable
from talbench.agents.resources import CpuMeter

log = logging.getLogger(__name__)

CANCEL_WAIT = 10.0  # seconds to wait for a cancelled job to wind down


class TooManyJobs(Exception):
    """max_concurrent_jobs are running already (HTTP 409)."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    probe: str
    run_id: str
    time_limit: float
    started: float
    state: str = wire.JOB_RUNNING
    ended: float | None = None
    result: Mapping[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in wire.JOB_FINAL_STATES

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "probe": self.probe,
            "run_id": self.run_id,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "time_limit": self.time_limit,
            "result": self.result,
            "error": self.error,
            "error_kind": self.error_kind,
            "resources": dict(self.resources),
        }


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return message[:500]


class JobRegistry:
    def __init__(
        self,
        *,
        max_concurrent: int = 8,
        max_kept: int = 64,
        clock: Callable[[], float] = time.time,
        meter: Callable[[], CpuMeter] = CpuMeter,
        on_change: Callable[[JobRecord], None] | None = None,
    ) -> None:
        self._max_concurrent = max_concurrent
        self._max_kept = max_kept
        self._clock = clock
        self._meter = meter
        self._on_change = on_change or (lambda record: None)
        self._records: dict[str, JobRecord] = {}  # insertion order == start order
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def running(self) -> list[JobRecord]:
        return [r for r in self._records.values() if not r.final]

    def busy_runs(self) -> frozenset[str]:
        return frozenset(r.run_id for r in self.running())

    def submit(self, probe: Probe[BaseModel], params: BaseModel, time_limit: float, ctx: ProbeContext) -> JobRecord:
        running = len(self._tasks)
        if running >= self._max_concurrent:
            raise TooManyJobs(f"{running} jobs are running already (at most {self._max_concurrent})")
        record = JobRecord(
            id=uuid.uuid4().hex[:16], probe=probe.name, run_id=ctx.run_id, time_limit=time_limit, started=self._clock()
        )
        self._records[record.id] = record
        self._tasks[record.id] = asyncio.get_running_loop().create_task(
            self._run(record.id, probe, params, time_limit, ctx), name=f"job-{record.id}-{probe.name}"
        )
        self._forget_old()
        self._on_change(record)
        return record

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a running job and wait (bounded) until it has ended; the final record."""
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_WAIT)
        return self._records.get(job_id)

    async def cancel_run(self, run_id: str) -> list[JobRecord]:
        ids = [r.id for r in self.running() if r.run_id == run_id]
        return [r for r in await asyncio.gather(*(self.cancel(i) for i in ids)) if r is not None]

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.cancel(r.id) for r in self.running()))

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait (bounded) for a job to end; for tests and callers that want to block."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait([task], timeout=timeout)
        return self._records.get(job_id)

    def _update(self, job_id: str, **changes: Any) -> None:
        self._records[job_id] = dataclasses.replace(self._records[job_id], **changes)

    def _forget_old(self) -> None:
        finished = [r.id for r in self._records.values() if r.final]
        for job_id in finished[: max(0, len(finished) - self._max_kept)]:
            del self._records[job_id]

    async def _run(
        self, job_id: str, probe: Probe[BaseModel], params: BaseModel, time_limit: float, ctx: ProbeContext
    ) -> None:
        meter = self._meter()
        meter.start()
        outcome = self._failed(wire.ERROR_FAILED, "job ended unexpectedly")
        timeout = asyncio.timeout(time_limit)
        try:
            async with timeout:
                result = await probe.run(params, ctx)
            json.dumps(result)  # refuse what GET could not send
            outcome = {"state": wire.JOB_DONE, "result": result}
        except asyncio.CancelledError:
            if timeout.expired():  # pragma: no cover - asyncio.timeout turns this into TimeoutError
                outcome = self._failed(wire.ERROR_TIMEOUT, f"time limit of {time_limit:g}s exceeded")
            else:
                outcome = {"state": wire.JOB_CANCELLED, "error": "cancelled", "error_kind": wire.ERROR_CANCELLED}
        except TimeoutError as exc:
            if timeout.expired():
                outcome = self._failed(wire.ERROR_TIMEOUT, f"time limit of {time_limit:g}s exceeded")
            else:
                log.error("job %s (%s) failed", job_id, probe.name, exc_info=exc)
                outcome = self._failed(wire.ERROR_FAILED, one_line(exc))
        except ProbeUnavailable as exc:
            outcome = self._failed(
                wire.ERROR_UNAVAILABLE, str(exc).strip().splitlines()[0] if str(exc).strip() else "unavailable"
            )
        except ProbeParamError as exc:
            outcome = self._failed(wire.ERROR_PARAMS, one_line(exc))
        except Exception as exc:
            log.error("job %s (%s) failed", job_id, probe.name, exc_info=exc)
            outcome = self._failed(wire.ERROR_FAILED, one_line(exc))
        finally:
            # Resources and the final state are recorded whatever happened, even when this
            # task is cancelled a second time while winding down.
            try:
                resources = await asyncio.shield(meter.stop())
            except asyncio.CancelledError:
                resources = {}
            self._tasks.pop(job_id, None)
            if job_id in self._records:
                self._update(job_id, ended=self._clock(), resources=resources, **outcome)
                self._on_change(self._records[job_id])
                self._forget_old()
            log.info(
                "job %s (%s, run %s) ended: %s %s",
                job_id,
                probe.name,
                ctx.run_id,
                outcome["state"],
                outcome.get("error") or "",
            )

    @staticmethod
    def _failed(kind: str, message: str) -> dict[str, Any]:
        return {"state": wire.JOB_FAILED, "error": message, "error_kind": kind}
