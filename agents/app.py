"""The agent's aiohttp application: the v1 API of agents/wire.py.

All state (jobs, cleanups, the UDP echo responder) lives on the application under app keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from talbench.agents import wire
from talbench.agents.auth import auth_middleware
from talbench.agents.cleanup import Cleanups
from talbench.agents.echo import EchoResponder, start_echo
from talbench.agents.facts import basic_facts, talbench_version
from talbench.agents.jobs import JobRegistry, TooManyJobs
from talbench.agents.probe import Probe, ProbeContext, ProbeParamError

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
FACTS_TIMEOUT = 30.0
RELEASE_TIMEOUT = 30.0
REAPER_INTERVAL = 30.0


@dataclass(frozen=True)
class AgentConfig:
    node: str
    token: str
    data_dir: Path
    listen_host: str
    listen_port: int
    max_concurrent_jobs: int = 8
    max_kept_jobs: int = 64
    max_time_limit: float = 900.0
    # What a run left running (CleanupRegistry) is released when none of its jobs ran for this
    # long: its coordinator is gone.  0 disables.
    run_idle_release_s: float = 3600.0


CONFIG = web.AppKey("config", AgentConfig)
PROBES = web.AppKey("probes", dict)
FACTS = web.AppKey("facts", object)
JOBS = web.AppKey("jobs", JobRegistry)
CLEANUPS = web.AppKey("cleanups", Cleanups)
ECHO = web.AppKey("echo", EchoResponder)


class BadRequest(Exception):
    """400 with a one-line message."""


def json_error(status: int, message: str) -> web.Response:
    line = " ".join(str(message).split()) or "error"
    return web.json_response({"schema": wire.SCHEMA_VERSION, "error": line[:500]}, status=status)


def ok(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"schema": wire.SCHEMA_VERSION, **payload}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug: log it, answer one line
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, f"internal error: {type(exc).__name__}")


# ---- handlers -------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return ok({"status": "ok", "node": config.node, "version": talbench_version(), "api": wire.API})


async def get_facts(request: web.Request) -> web.Response:
    gather: Callable[[], dict[str, Any]] = request.app[FACTS]  # type: ignore[assignment]
    try:
        found = await asyncio.wait_for(asyncio.to_thread(gather), FACTS_TIMEOUT)
    except asyncio.TimeoutError:
        return json_error(500, f"facts took more than {FACTS_TIMEOUT:g}s")
    return ok({"node": request.app[CONFIG].node, "facts": found})


def _run_id(value: Any) -> str:
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        raise BadRequest("run_id must be 1 to 64 characters of A-Z, a-z, 0-9 and '-'")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


async def submit_job(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    body = await _json_body(request)
    if body.get("schema") != wire.SCHEMA_VERSION:
        raise BadRequest(f"schema must be {wire.SCHEMA_VERSION}, got {body.get('schema')!r}")
    unknown = sorted(set(body) - {"schema", "run_id", "probe", "params"})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(map(str, unknown))}")
    run_id = _run_id(body.get("run_id"))
    name = body.get("probe")
    if not isinstance(name, str):
        raise BadRequest("probe must be a string")
    probe = app[PROBES].get(name)
    if probe is None:
        raise web.HTTPNotFound(reason=f"unknown probe {name!r} (this agent has: {', '.join(sorted(app[PROBES])) or 'none'})")
    raw = body.get("params", {})
    if not isinstance(raw, dict):
        raise BadRequest("params must be a JSON object")
    try:
        params = probe.parse(raw)
        limit = float(probe.time_limit(params))
    except ProbeParamError as exc:
        raise BadRequest(f"{name}: {exc}") from exc
    if not math.isfinite(limit) or limit <= 0:
        raise BadRequest(f"{name}: time limit {limit!r} is not a positive number of seconds")
    if limit > config.max_time_limit:
        raise BadRequest(f"{name}: these params need {limit:.1f}s, more than this agent allows ({config.max_time_limit:g}s)")
    ctx = ProbeContext(
        node=config.node,
        run_id=run_id,
        data_dir=config.data_dir,
        listen_host=config.listen_host,
        listen_port=config.listen_port,
        cleanup=app[CLEANUPS],
    )
    try:
        record = app[JOBS].submit(probe, params, limit, ctx)
    except TooManyJobs as exc:
        raise web.HTTPConflict(reason=str(exc)) from exc
    log.info("job %s: %s for run %s, limit %.1fs", record.id, name, run_id, limit)
    return ok({"job": record.to_wire()}, status=202)


def _job_or_404(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if request.app[JOBS].get(job_id) is None:
        raise web.HTTPNotFound(reason=f"no job {job_id!r}")
    return job_id


async def get_job(request: web.Request) -> web.Response:
    record = request.app[JOBS].get(_job_or_404(request))
    if record is None:  # dropped in between
        raise web.HTTPNotFound(reason="job gone")
    return ok({"job": record.to_wire()})


async def cancel_job(request: web.Request) -> web.Response:
    job_id = _job_or_404(request)
    record = await request.app[JOBS].cancel(job_id)
    if record is None:
        raise web.HTTPNotFound(reason=f"no job {job_id!r}")
    return ok({"job": record.to_wire()})


async def release_run(request: web.Request) -> web.Response:
    run_id = _run_id(request.match_info["run_id"])
    cancelled = await request.app[JOBS].cancel_run(run_id)
    report = await request.app[CLEANUPS].release_run(run_id)
    log.info("run %s released: %d job(s) cancelled, released %s, failed %s", run_id, len(cancelled), report.released, report.failed)
    return ok({"released": list(report.released), "failed": list(report.failed), "cancelled": [r.id for r in cancelled]})


# ---- lifecycle ------------------------------------------------------------------------------


async def _echo_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[ECHO] = await start_echo(config.listen_host, config.listen_port)
    try:
        yield
    finally:
        app[ECHO].close()


async def _reap_abandoned_runs(app: web.Application, interval: float) -> None:
    config = app[CONFIG]
    while True:
        await asyncio.sleep(interval)
        for run_id in app[CLEANUPS].idle_runs(config.run_idle_release_s, app[JOBS].busy_runs()):
            try:
                report = await app[CLEANUPS].release_run(run_id)
            except Exception:  # never let the reaper die
                log.exception("releasing idle run %s failed", run_id)
                continue
            log.warning(
                "run %s idle for %gs: released %s, failed %s",
                run_id, config.run_idle_release_s, report.released, report.failed,
            )


async def _reaper_ctx(app: web.Application) -> AsyncIterator[None]:
    seconds = app[CONFIG].run_idle_release_s
    task = asyncio.create_task(_reap_abandoned_runs(app, min(REAPER_INTERVAL, seconds / 4))) if seconds > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _stop_jobs(app: web.Application) -> None:
    await app[JOBS].shutdown()
    report = await app[CLEANUPS].release_all()
    if report.released or report.failed:
        log.info("shutdown: released %s, failed %s", report.released, report.failed)


def make_app(
    config: AgentConfig,
    probes: Mapping[str, Probe],
    *,
    facts: Callable[[], dict[str, Any]] | None = None,
) -> web.Application:
    if not config.token:
        raise ValueError("the agent token must not be empty")
    app = web.Application(
        middlewares=[errors_as_json, auth_middleware(config.token, open_paths=frozenset({f"{wire.PREFIX}/health"}))],
        client_max_size=4 * 1024 * 1024,
    )
    app[CONFIG] = config
    app[PROBES] = dict(probes)
    app[FACTS] = facts or basic_facts
    cleanups = Cleanups(release_timeout=RELEASE_TIMEOUT)
    app[CLEANUPS] = cleanups
    app[JOBS] = JobRegistry(
        max_concurrent=config.max_concurrent_jobs,
        max_kept=config.max_kept_jobs,
        on_change=lambda record: cleanups.touch(record.run_id),
    )
    app.cleanup_ctx.append(_echo_ctx)
    app.cleanup_ctx.append(_reaper_ctx)
    app.on_shutdown.append(_stop_jobs)
    p = wire.PREFIX
    app.router.add_get(f"{p}/health", health)
    app.router.add_get(f"{p}/facts", get_facts)
    app.router.add_post(f"{p}/jobs", submit_job)
    app.router.add_get(f"{p}/jobs/{{job_id}}", get_job)
    app.router.add_delete(f"{p}/jobs/{{job_id}}", cancel_job)
    app.router.add_delete(f"{p}/runs/{{run_id}}", release_run)
    return app
