"""Running fio (through the ``sh`` library) and reading its JSON output.

Only what the fsync probe needs: locate fio, run one bounded job, and pull the fdatasync and
write-completion latency out of ``--output-format=json+`` (which adds the raw latency histogram,
``bins``, next to fio's percentile table, so the coordinator can re-derive or merge them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import sh

from talbench.agents.probe import ProbeUnavailable

INSTALL_HINT = "fio not found: apt-get install fio"
KILL_WAIT = 5.0  # seconds to wait for a killed fio to go away


class FioError(RuntimeError):
    """fio ran but failed, or its output cannot be read; the message is one line."""


@dataclass(frozen=True)
class FioOutcome:
    exit_code: int | None  # None when killed
    stdout: str
    stderr: str
    killed: bool  # killed at the hard time limit


def fio_command(binary: str = "fio") -> sh.Command:
    """The fio command, or ProbeUnavailable with the install hint."""
    try:
        return sh.Command(binary)
    except sh.CommandNotFound as exc:
        raise ProbeUnavailable(INSTALL_HINT) from exc


async def fio_version(fio: sh.Command, *, timeout: float = 10.0) -> str:
    """``fio-3.33``; raises FioError when fio does not answer."""
    outcome = await run_fio(fio, ["--version"], hard_timeout=timeout)
    if outcome.killed or outcome.exit_code != 0:
        raise FioError(f"fio --version failed: {_last_line(outcome.stderr or outcome.stdout)}")
    return outcome.stdout.strip()


async def run_fio(fio: sh.Command, args: Sequence[str], *, hard_timeout: float, cwd: str | None = None) -> FioOutcome:
    """Run fio with ``args`` and wait for it, at most ``hard_timeout`` seconds: past that fio's
    whole process group (fio forks its jobs) is killed and the outcome says so.  Cancelling the
    caller kills fio too."""
    running = fio(
        *args,
        _async=True,
        _return_cmd=True,
        _ok_code=list(range(256)),  # the exit code is ours to judge
        _cwd=cwd,
        _new_session=True,  # its own process group, so that one kill reaches the job processes
    )

    async def completion() -> None:
        await running

    try:
        await asyncio.wait_for(completion(), hard_timeout)
    except TimeoutError:
        await _kill(running)
        return FioOutcome(None, _text(running, "stdout"), _text(running, "stderr"), killed=True)
    except asyncio.CancelledError:
        await _kill(running)
        raise
    except sh.SignalException as exc:  # killed by someone else
        return FioOutcome(None, _text(running, "stdout"), f"fio was killed ({type(exc).__name__})", killed=False)
    return FioOutcome(running.process.exit_code, _text(running, "stdout"), _text(running, "stderr"), killed=False)


async def _kill(running: Any) -> None:
    """SIGKILL fio and every process it forked (its job processes call setsid, so a process
    group kill would miss them), then reap it; bounded, off the event loop."""
    process = running.process

    def kill_and_reap() -> None:
        try:
            root = psutil.Process(process.pid)
            victims = [*root.children(recursive=True), root]
        except psutil.Error:
            victims = []
        for victim in victims:
            try:
                victim.kill()
            except psutil.Error:
                pass
        psutil.wait_procs([v for v in victims if v.pid != process.pid], timeout=KILL_WAIT)
        try:
            process.wait()
        except Exception:
            pass

    try:
        await asyncio.wait_for(asyncio.shield(asyncio.to_thread(kill_and_reap)), 2 * KILL_WAIT)
    except (TimeoutError, asyncio.CancelledError):
        pass


def _text(running: Any, stream: str) -> str:
    try:
        raw = getattr(running.process, stream)  # the process's buffer: no wait, works after a kill
    except Exception:
        return ""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw or "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def load_json(stdout: str) -> dict[str, Any]:
    """fio's JSON document from its stdout (fio may print notes before the JSON)."""
    start = stdout.find("{")
    if start < 0:
        raise FioError(f"fio printed no JSON: {_last_line(stdout)}")
    try:
        doc = json.loads(stdout[start:])
    except ValueError as exc:
        raise FioError(f"fio printed malformed JSON ({exc})") from exc
    if not isinstance(doc, dict) or not doc.get("jobs"):
        raise FioError("fio's JSON has no jobs")
    return doc


def failure_message(outcome: FioOutcome) -> str:
    """One line saying why fio failed, from its stderr (``fio: ... No space left on device``)."""
    text = outcome.stderr.strip() or outcome.stdout.strip()
    errors = [line.strip() for line in text.splitlines() if "error" in line.lower() or line.startswith("fio:")]
    detail = errors[-1] if errors else _last_line(text)
    return f"fio exited with code {outcome.exit_code}: {detail}"


def latency_block(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """A latency block of fio (``sync.lat_ns``, ``write.clat_ns``) as kept in results: count,
    min/max/mean in ns, fio's percentile table (percent -> ns) and the histogram (ns -> count).

    The count is ``N`` when fio prints it (3.33 does), else the histogram's total: ``sync.total_ios``
    reads 0 in fio's JSON and must not be used."""
    raw = raw or {}
    bins = {str(int(float(k))): int(v) for k, v in (raw.get("bins") or {}).items() if int(v) > 0}
    count = raw.get("N")
    if not isinstance(count, int):
        count = sum(bins.values())
    percentiles = {_percent_key(k): int(v) for k, v in (raw.get("percentile") or {}).items()}
    return {
        "count": int(count),
        "min_ns": int(raw.get("min") or 0),
        "max_ns": int(raw.get("max") or 0),
        "mean_ns": float(raw.get("mean") or 0.0),
        "stddev_ns": float(raw.get("stddev") or 0.0),
        "percentiles_ns": percentiles,
        "bins_ns": bins,
    }


def _percent_key(key: str) -> str:
    """``"99.900000"`` -> ``"99.9"``."""
    return f"{float(key):g}"


def job_figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of ``jobs[0]`` that the fsync probe reports."""
    job = doc["jobs"][0]
    write = job.get("write") or {}
    sync = job.get("sync") or {}
    return {
        "fio_version": str(doc.get("fio version", "")),
        "error": int(job.get("error") or 0),
        "runtime_ms": int(job.get("job_runtime") or write.get("runtime") or 0),
        "write": {
            "ios": int(write.get("total_ios") or 0),
            "bytes": int(write.get("io_bytes") or 0),
            "iops": float(write.get("iops") or 0.0),
            "bandwidth_bytes": int(write.get("bw_bytes") or 0),
            "clat": latency_block(write.get("clat_ns")),
        },
        "sync": {"lat": latency_block(sync.get("lat_ns"))},
    }
