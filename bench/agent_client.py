"""Client for one agent's v1 HTTP API.

How the agent is reached (a unix socket in a lab node's directory, a node IP inside the
cluster, the API server's pod proxy from a laptop) is the dispatcher's business: it hands in an
aiohttp session and a base URL.  Every call is bounded in time; a job that outlives its limit is
cancelled on the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from talbench.agents import wire
from talbench.bench.model import Measurement, ResultKey

TOKEN_HEADER_ALT = wire.TOKEN_HEADER_ALT
LONG_POLL = 20.0  # seconds an agent may hold a job poll (at most wire.MAX_JOB_WAIT)
GATE_LIMIT = 48  # requests in flight to a fleet's agents at once (the kube session holds 64 connections)
MAX_POLL_PAUSE = 10.0  # seconds between a crowded fleet's short polls of one job, at most


class RequestGate:
    """The coordinator's bound on requests in flight to one fleet's agents: through the API
    server's pod proxy each is a request to the API server, and a session's connections are few.

    A request waits for a slot before its own timeout starts (a wait for a slot is not an agent
    that did not answer).  While at most half the slots' worth of jobs are running, each job is
    long-polled (one request answered when it ends); beyond that the fleet is *crowded* and long
    polls would hold every slot: a job is then asked with short polls, spaced by how crowded the
    fleet is (at most MAX_POLL_PAUSE apart), so that requests per job stay about one per
    MAX_POLL_PAUSE of its duration whatever the fleet's size."""

    def __init__(self, limit: int = GATE_LIMIT) -> None:
        self.limit = max(2, limit)
        self._slots = asyncio.Semaphore(self.limit)
        self.jobs = 0  # jobs the fleet's clients are waiting for

    @property
    def crowded(self) -> bool:
        return self.jobs > self.limit // 2

    def pause(self) -> float:
        """Seconds between two short polls of one job in a crowded fleet."""
        return min(MAX_POLL_PAUSE, max(1.0, 2.0 * self.jobs / self.limit))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            yield


class AgentError(Exception):
    """The agent could not be reached or refused the request (message is one line)."""


class _GaveUp(AgentError):
    """The job did not end within the caller's deadline."""

    def __init__(self, message: str, started: float | None) -> None:
        super().__init__(message)
        self.started = started


@dataclass(frozen=True)
class JobOutcome:
    ok: bool
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    error_kind: str | None = None  # wire.ERROR_* ; "unavailable" means a missing tool/permission

    def measurement(
        self, key: ResultKey, data: Mapping[str, Any] | None = None, *, error: str | None = None
    ) -> Measurement:
        """This job as the Measurement for ``key``: its result (or ``data``, the part of it that
        belongs to ``key``) when it succeeded and ``error`` is None, else the error."""
        if self.ok and error is None:
            result = self.result if data is None else data
            return Measurement(
                key, True, data=dict(result), started=self.started, ended=self.ended, resources=self.resources
            )
        return Measurement(
            key,
            False,
            error=error or self.error or "failed",
            error_kind=self.error_kind,
            started=self.started,
            ended=self.ended,
        )


class AgentClient:
    def __init__(
        self,
        node: str,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        request_timeout: float = 10.0,
        extra_headers: Mapping[str, str] | None = None,
        gate: RequestGate | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        self.node = node
        self._gate = gate or RequestGate()  # the dispatcher hands every client of a fleet the same one
        self._session = session
        self._base = base_url.rstrip("/")
        self._extra = dict(extra_headers or {})
        self._headers = {wire.TOKEN_HEADER: f"Bearer {token}", TOKEN_HEADER_ALT: token, **self._extra}
        self._request_timeout = request_timeout
        # an https base URL dialled directly (the session's connector trusts the run's CA,
        # bench/agent_tls.py): the name the agents' certificate carries, whatever address is dialled
        self._tls: dict[str, Any] = {"server_hostname": tls_server_name} if tls_server_name else {}

    async def _call(
        self, method: str, path: str, *, body: Any = None, auth: bool = True, wait: float = 0.0
    ) -> dict[str, Any]:
        url = f"{self._base}{wire.PREFIX}{path}"
        limit = self._request_timeout + wait
        try:
            async with (
                self._gate.slot(),
                self._session.request(
                    method,
                    url,
                    json=body,
                    headers=self._headers if auth else self._extra,
                    timeout=aiohttp.ClientTimeout(total=limit),
                    **self._tls,
                ) as response,
            ):
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = {"error": (await response.text())[:200]}
                if response.status >= 400:
                    message = payload.get("error") if isinstance(payload, dict) else None
                    raise AgentError(f"agent {self.node}: HTTP {response.status}: {message or response.reason}")
                if not isinstance(payload, dict):
                    raise AgentError(f"agent {self.node}: unexpected answer to {method} {path}")
                return payload
        except TimeoutError as exc:
            raise AgentError(f"agent {self.node}: no answer within {limit:g}s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise AgentError(f"agent {self.node}: its certificate is not the run's: {exc.certificate_error}") from exc
        except aiohttp.ClientError as exc:
            raise AgentError(f"agent {self.node}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health", auth=False)

    async def facts(self) -> dict[str, Any]:
        return await self._call("GET", "/facts")

    async def run_job(
        self,
        probe: str,
        params: Mapping[str, Any],
        run_id: str,
        *,
        deadline: float,
        poll_interval: float = 0.25,
    ) -> JobOutcome:
        """Submit a job and wait for it, at most ``deadline`` seconds in all.  Never raises for
        the agent's failures: they come back as ``ok=False`` with the reason."""
        give_up = time.monotonic() + deadline
        job_id: str | None = None
        try:
            answer = await self._call(
                "POST",
                "/jobs",
                body={"schema": wire.SCHEMA_VERSION, "run_id": run_id, "probe": probe, "params": dict(params)},
            )
            job = answer["job"]
            job_id = job["id"]
            job = await self._wait_for(job, give_up, deadline, poll_interval)
            job_id = None  # finished: nothing to cancel
            return JobOutcome(
                ok=job["state"] == wire.JOB_DONE,
                result=job.get("result") or {},
                error=job.get("error") or (None if job["state"] == wire.JOB_DONE else job["state"]),
                started=job.get("started"),
                ended=job.get("ended"),
                resources=job.get("resources") or {},
                error_kind=job.get("error_kind"),
            )
        except _GaveUp as exc:
            return JobOutcome(False, error=str(exc), started=exc.started)
        except AgentError as exc:
            return JobOutcome(False, error=str(exc))
        except (KeyError, TypeError) as exc:
            return JobOutcome(False, error=f"agent {self.node}: malformed job answer ({exc})")
        finally:
            if job_id is not None:
                await self._cancel_quietly(job_id)

    async def _wait_for(
        self, job: dict[str, Any], give_up: float, deadline: float, poll_interval: float
    ) -> dict[str, Any]:
        """Poll ``job`` until it is final or ``give_up``; see RequestGate for how."""
        gate = self._gate
        gate.jobs += 1
        try:
            while job["state"] not in wire.JOB_FINAL_STATES:
                if time.monotonic() >= give_up:
                    raise _GaveUp(f"no result from {self.node} within {deadline:g}s", job.get("started"))
                wait = max(0.0, min(LONG_POLL, give_up - time.monotonic()))
                if gate.crowded:  # short polls, spaced, outside the gate
                    await asyncio.sleep(max(0.0, min(gate.pause(), give_up - time.monotonic())))
                    wait = 0.0
                # a long poll: the agent answers when the job ends, or after ``wait``; an agent
                # that answers at once anyway (older) is asked again after ``poll_interval``
                asked = time.monotonic()
                job = (await self._call("GET", f"/jobs/{job['id']}?wait={wait:.1f}", wait=wait))["job"]
                if job["state"] not in wire.JOB_FINAL_STATES and wait and time.monotonic() - asked < poll_interval:
                    await asyncio.sleep(poll_interval)
            return job
        finally:
            gate.jobs -= 1

    async def release_run(self, run_id: str) -> list[str]:
        """Ask the agent to release everything ``run_id`` left running; returns the names."""
        answer = await self._call("DELETE", f"/runs/{run_id}")
        return list(answer.get("released") or [])

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await asyncio.shield(self._call("DELETE", f"/jobs/{job_id}"))
        except (AgentError, asyncio.CancelledError):
            pass
