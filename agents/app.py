"""The agent's aiohttp application: the v1 API of agents/wire.py.

All state (jobs, cleanups, the UDP echo responder) lives on the application under app keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, Field
from pydantic_core import from_json

from talbench.agents import wire
from talbench.agents.auth import auth_middleware
from talbench.agents.cleanup import Cleanups
from talbench.agents.facts import basic_facts, talbench_version
from talbench.agents.jobs import JobRegistry, TooManyJobs
from talbench.agents.net.echo import EchoResponder, start_echo
from talbench.agents.params import Params, param, validate
from talbench.agents.probe import Probe, ProbeContext, ProbeParamError

log = logging.getLogger(__name__)

FACTS_TIMEOUT = 30.0
RELEASE_TIMEOUT = 30.0
REAPER_INTERVAL = 30.0
MAX_BODY_BYTES = 4 * 1024 * 1024
BODY_LINGER = 10.0  # seconds a body left unread after the answer may take to arrive (aiohttp's lingering)


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
    max_body_bytes: int = MAX_BODY_BYTES  # a larger request body is refused (413)
    body_timeout_s: float = 30.0  # a body not all received by then is refused (408)


CONFIG = web.AppKey("config", AgentConfig)
PROBES: web.AppKey[dict[str, Probe[BaseModel]]] = web.AppKey("probes", dict)
FACTS = web.AppKey("facts", object)
JOBS = web.AppKey("jobs", JobRegistry)
CLEANUPS = web.AppKey("cleanups", Cleanups)
ECHO = web.AppKey("echo", EchoResponder)


class ApiError(Exception):
    """An error answer: ``status`` and a one-line message (the middleware writes the JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BadRequest(ApiError):
    """400 with a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class JobRequest(Params):
    """The body of ``POST /v1/jobs`` (the envelope); ``params`` is checked by the job's own model."""

    schema_version: Annotated[int, Field(alias="schema")] = param(
        ge=wire.SCHEMA_VERSION, le=wire.SCHEMA_VERSION, help="the wire schema version"
    )
    run_id: str = param(pattern=wire.RUN_ID_PATTERN, help="the coordinator's run id")
    probe: str = param(min_length=1, max_length=200, help="the job's name: a probe's, or probe.part")
    params: dict[str, Any] = param(default={}, help="the job's parameters")


def json_error(status: int, message: str) -> web.Response:
    line = " ".join(str(message).split()) or "error"
    return web.json_response({"schema": wire.SCHEMA_VERSION, "error": line[:500]}, status=status)


def ok(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"schema": wire.SCHEMA_VERSION, **payload}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
    except Exception as exc:  # a bug: log it, answer one line
        log.exception("%s %s failed", request.method, request.path)
        response = json_error(500, f"internal error: {type(exc).__name__}")
    if not request.content.is_eof():
        await _answer_then_discard_body(request, response, 0.0 if response.status == 408 else BODY_LINGER)
    return response


async def _answer_then_discard_body(request: web.Request, response: web.StreamResponse, linger: float) -> None:
    """Answered before the body was all read (401, 404, 413, a body too slow or undecodable): send
    the answer with ``Connection: close``, then read the rest of the body away for up to
    ``linger`` seconds as aiohttp's lingering would (a client still sending gets its answer, not a
    reset), but stop at once when the body is broken, where aiohttp would log an unhandled error."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    try:
        async with asyncio.timeout(linger):
            while not request.content.is_eof():
                await request.content.readany()
    except Exception:  # broken, cut or too slow (TimeoutError)
        request.protocol.force_close()


class ProtocolErrorLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log.  A request aiohttp cannot parse (a bad request line, bytes not allowed
    in a path or header, broken chunked framing) is the client's error, answered 400 by aiohttp
    itself: one warning line here, where aiohttp logs an error with a traceback."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            self.logger.warning(f"{msg}: %s", *args, " ".join(str(exc.message).split())[:200])
            return
        super().log(level, msg, *args, **kwargs)


# ---- handlers -------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return ok({"status": "ok", "node": config.node, "version": talbench_version(), "api": wire.API})


async def get_facts(request: web.Request) -> web.Response:
    gather: Callable[[], dict[str, Any]] = request.app[FACTS]  # type: ignore[assignment]
    try:
        found = await asyncio.wait_for(asyncio.to_thread(gather), FACTS_TIMEOUT)
    except TimeoutError:
        return json_error(500, f"facts took more than {FACTS_TIMEOUT:g}s")
    return ok({"node": request.app[CONFIG].node, "facts": found})


def _run_id(value: Any) -> str:
    if not wire.valid_run_id(value):
        raise BadRequest(
            "run_id must be 1 to 54 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return str(value)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object.  Bounded: at most ``max_body_bytes`` (413), all received within
    ``body_timeout_s`` (408: also what a chunked body with broken framing ends in, which aiohttp
    leaves waiting), not compressed (415), nested at most 200 deep (pydantic_core's decoder
    refuses deeper with a ValueError, where the standard library's would overflow the stack);
    UTF-8 whatever the Content-Type says; no NaN or Infinity."""
    config = request.app[CONFIG]
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, f"Content-Encoding {encoding[:40]!r} is not accepted: send the JSON as is")
    try:
        async with asyncio.timeout(config.body_timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body larger than {config.max_body_bytes} bytes") from None
    except TimeoutError:
        raise ApiError(408, f"body not received within {config.body_timeout_s:g}s") from None
    except web.RequestPayloadError as exc:  # aiohttp could not decode it
        detail = getattr(exc.__cause__, "message", "") or "broken"
        raise BadRequest(f"body cannot be read: {detail}") from None
    try:
        body = from_json(raw, allow_inf_nan=False)
    except (ValueError, RecursionError) as exc:
        problem = "nested too deeply" if "recursion" in str(exc) else "not JSON"
        raise BadRequest(f"body is {problem}: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def _job_params(probe: Probe[BaseModel], raw: Mapping[str, Any], max_time_limit: float) -> tuple[BaseModel, float]:
    """The job's params, validated by its own model, and its time limit; BadRequest otherwise,
    whatever the job's parse or limit raise on input they did not foresee."""
    name = probe.name
    try:
        params = probe.parse(raw)
        limit = float(probe.time_limit(params))
    except ProbeParamError as exc:
        raise BadRequest(f"{name}: {exc}") from None
    except Exception as exc:  # still the body's fault; a type the job did not expect is its bug
        if not isinstance(exc, (ValueError, TypeError, RecursionError, ArithmeticError)):
            log.exception("%s: parsing params failed", name)
        raise BadRequest(f"{name}: invalid params ({type(exc).__name__}: {exc})") from None
    if not math.isfinite(limit) or limit <= 0:
        raise BadRequest(f"{name}: time limit {limit!r} is not a positive number of seconds")
    if limit > max_time_limit:
        raise BadRequest(f"{name}: these params need {limit:.1f}s, more than this agent allows ({max_time_limit:g}s)")
    return params, limit


async def submit_job(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    try:
        job = validate(JobRequest, await _json_body(request))
    except ProbeParamError as exc:
        raise BadRequest(str(exc)) from None
    name, run_id = job.probe, job.run_id
    probes = app[PROBES]
    probe = probes.get(name)
    if probe is None:
        raise ApiError(404, f"unknown probe {name!r} (this agent has: {', '.join(sorted(probes)) or 'none'})")
    params, limit = _job_params(probe, job.params, config.max_time_limit)
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
        raise ApiError(409, str(exc)) from None
    log.info("job %s: %s for run %s, limit %.1fs", record.id, name, run_id, limit)
    return ok({"job": record.to_wire()}, status=202)


def _job_or_404(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if request.app[JOBS].get(job_id) is None:
        raise ApiError(404, f"no job {job_id!r}")
    return job_id


async def get_job(request: web.Request) -> web.Response:
    job_id = _job_or_404(request)
    wait = _wait_seconds(request.query.get("wait"))
    record = await request.app[JOBS].wait(job_id, wait) if wait > 0 else request.app[JOBS].get(job_id)
    if record is None:  # dropped in between
        raise ApiError(404, "job gone")
    return ok({"job": record.to_wire()})


def _wait_seconds(raw: str | None) -> float:
    """``?wait=`` of a job poll: 0 (answer at once) to wire.MAX_JOB_WAIT seconds."""
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise ApiError(400, f"wait must be a number of seconds (got {raw[:20]!r})") from None
    if not 0 <= wait <= wire.MAX_JOB_WAIT:
        raise ApiError(400, f"wait must be between 0 and {wire.MAX_JOB_WAIT:g} seconds (got {raw[:20]})")
    return wait


async def cancel_job(request: web.Request) -> web.Response:
    job_id = _job_or_404(request)
    record = await request.app[JOBS].cancel(job_id)
    if record is None:
        raise ApiError(404, f"no job {job_id!r}")
    return ok({"job": record.to_wire()})


async def release_run(request: web.Request) -> web.Response:
    run_id = _run_id(request.match_info["run_id"])
    cancelled = await request.app[JOBS].cancel_run(run_id)
    report = await request.app[CLEANUPS].release_run(run_id)
    log.info(
        "run %s released: %d job(s) cancelled, released %s, failed %s",
        run_id,
        len(cancelled),
        report.released,
        report.failed,
    )
    return ok(
        {"released": list(report.released), "failed": list(report.failed), "cancelled": [r.id for r in cancelled]}
    )


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
                run_id,
                config.run_idle_release_s,
                report.released,
                report.failed,
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
    probes: Mapping[str, Probe[BaseModel]],
    *,
    facts: Callable[[], dict[str, Any]] | None = None,
) -> web.Application:
    if not config.token:
        raise ValueError("the agent token must not be empty")
    app = web.Application(
        middlewares=[errors_as_json, auth_middleware(config.token, open_paths=frozenset({f"{wire.PREFIX}/health"}))],
        client_max_size=config.max_body_bytes,
        # Bodies are taken as sent: a Content-Encoding is refused in one JSON line (_json_body)
        # rather than decoded by aiohttp, whose decoding errors end in its own text and traceback;
        # what aiohttp cannot parse at all it still answers itself, logged in one line.
        handler_args={"auto_decompress": False, "logger": ProtocolErrorLog(logging.getLogger("aiohttp.server"))},
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
