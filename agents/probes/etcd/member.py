"""Job ``etcd.member``: one member of a scratch etcd cluster on this node.

Members outlive the job that starts them: ``action: start`` launches the etcd binary as a child
of the agent (own session, killed if the agent dies), waits until it serves its client URL (which
etcd only does once the cluster has a leader), registers a release in the cleanup registry under
the run id and returns.  ``action: stop`` releases it: SIGTERM, a bounded wait, SIGKILL, and the
data directory is removed always.  ``action: status`` reports whether it is still running;
``action: peers`` measures the round trip to the other members' peer listeners.

The data directory lives below the node's data directory (the disk under test), named by run id
and member name.  Ports are chosen by the coordinator and must not clash with what Talos uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, IPvAnyAddress, RootModel, model_validator

from talbench.agents.params import BYTES, SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeParamError, ProbeUnavailable
from talbench.agents.probes.etcd import peer_rtt
from talbench.agents.probes.etcd.binary import binary_version, find_etcd
from talbench.agents.probes.etcd.settings import (
    MAX_MEMBERS,
    MEMBER_NAME,
    MemberName,
    MemberPorts,
    MemberTiming,
    MemberUrl,
    Startup,
)
from talbench.agents.wire import RUN_ID_PATTERN, valid_run_id

STOP_TERM_WAIT = 10.0  # seconds after SIGTERM before SIGKILL
STOP_KILL_WAIT = 5.0
LOG_TAIL_BYTES = 1500


def url_host(host: str) -> str:
    """``host`` as it stands in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def cleanup_name(member: str) -> str:
    return f"{JOB.name}/{member}"


def member_dir(data_dir: Path, run_id: str, member: str) -> Path:
    """Everything of one member (etcd's data dir and its log) lives below this directory."""
    return data_dir / f"etcd-{run_id}-{member}"


# ---- parameters: one model per action ----------------------------------------------------------


class Named(Params):
    name: str = param(help="the member's name (etcd --name)", pattern=MEMBER_NAME)


class StartMember(Named, MemberPorts, MemberTiming, Startup):
    """Start this node's member of a new cluster (the scenario's timing, the driver's ports)."""

    action: Literal["start"] = param(help="start the member; it runs until stopped or the run is released")
    host: IPvAnyAddress = param(help="the address peers and clients use (the node address)")
    initial_cluster: dict[MemberName, MemberUrl] = param(
        min_length=1,
        max_length=MAX_MEMBERS,
        help="every member of the new cluster: name -> peer URL (http://ADDRESS:PORT)",
    )
    cluster_token: str = param(pattern=RUN_ID_PATTERN, help="etcd --initial-cluster-token: the run id")
    quota_bytes: int = param(8 * 2**30, ge=2**20, le=64 * 2**30, unit=BYTES, help="etcd --quota-backend-bytes")

    @property
    def client_url(self) -> str:
        return f"http://{url_host(str(self.host))}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{url_host(str(self.host))}:{self.peer_port}"

    @property
    def heartbeat_ms(self) -> int:
        return round(self.heartbeat_interval * 1000)

    @property
    def election_ms(self) -> int:
        return round(self.election_timeout * 1000)

    @model_validator(mode="after")
    def _in_its_own_cluster(self) -> Self:
        if self.initial_cluster.get(self.name) != self.peer_url:
            raise ValueError(f"initial_cluster must contain {self.name}={self.peer_url}")
        return self


class StopMember(Named):
    action: Literal["stop"] = param(help="stop the member and remove its data (idempotent)")


class MemberStatus(Named):
    action: Literal["status"] = param(help="whether the member is still running")


class MeasurePeers(Named):
    action: Literal["peers"] = param(help="HTTP round trips from this node to the other members' peer listeners")
    peers: dict[MemberName, MemberUrl] = param(
        max_length=MAX_MEMBERS, help="the other members: name -> peer URL (http://ADDRESS:PORT)"
    )
    count: int = param(20, ge=1, le=500, help="measured round trips per peer")
    interval: float = param(0.05, ge=0.001, le=1.0, unit=SECONDS, help="gap between round trips")


MemberRequest = StartMember | StopMember | MemberStatus | MeasurePeers


class MemberParams(RootModel[Annotated[MemberRequest, Field(discriminator="action")]]):
    """One ``etcd.member`` job: the action names the model."""

    model_config = ConfigDict(frozen=True, strict=True)


def etcd_command(binary: str, params: StartMember, data: Path, listen_host: str) -> list[str]:
    listen = url_host(listen_host)
    cluster = ",".join(f"{member}={url}" for member, url in sorted(params.initial_cluster.items()))
    command = [
        binary,
        "--name",
        params.name,
        "--data-dir",
        str(data),
        "--listen-client-urls",
        f"http://{listen}:{params.client_port}",
        "--advertise-client-urls",
        params.client_url,
        "--listen-peer-urls",
        f"http://{listen}:{params.peer_port}",
        "--initial-advertise-peer-urls",
        params.peer_url,
        "--initial-cluster",
        cluster,
        "--initial-cluster-token",
        params.cluster_token,
        "--initial-cluster-state",
        "new",
        "--heartbeat-interval",
        str(params.heartbeat_ms),
        "--election-timeout",
        str(params.election_ms),
        "--quota-backend-bytes",
        str(params.quota_bytes),
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    ]
    setpriv = shutil.which("setpriv")
    if setpriv:  # the member dies with the agent, whatever kills the agent
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    return command


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines()[1:] if line.strip()] if size > LOG_TAIL_BYTES else text.splitlines()
    return " | ".join(_short_log_line(line) for line in lines[-4:])


def _short_log_line(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line[:300]
    if isinstance(record, dict):
        extra = record.get("error") or ""
        return f"{record.get('level', '')}: {record.get('msg', '')} {extra}".strip()[:300]
    return line[:300]


class Member:
    """One running etcd member process and the directory it owns."""

    def __init__(self, params: StartMember, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.params = params
        self.root = root
        self.process = process
        self.started = time.time()
        self.stop_report: dict[str, Any] = {}

    @property
    def log_path(self) -> Path:
        return self.root / "etcd.log"

    async def stop(self, *, term_wait: float = STOP_TERM_WAIT, kill_wait: float = STOP_KILL_WAIT) -> None:
        """SIGTERM, bounded wait, SIGKILL; then remove the directory (always)."""
        forced = False
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                if not await _wait_exit(self.process, term_wait):
                    forced = True
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    await _wait_exit(self.process, kill_wait)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.stop_report = {
                "exit_code": self.process.poll(),
                "forced": forced,
                "data_removed": not self.root.exists(),
            }
        if self.root.exists():
            raise OSError(f"could not remove {self.root}")
        if self.process.poll() is None:
            raise OSError(f"etcd member {self.params.name} (pid {self.process.pid}) did not exit after SIGKILL")


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


async def _wait_serving(member: Member, deadline: float) -> dict[str, Any]:
    """Until the member answers /health true on its client URL (it serves clients only once the
    cluster has a leader), the process exits, or ``deadline`` (monotonic) passes."""
    url = f"{member.params.client_url}/health"
    last = "no answer yet"
    while time.monotonic() < deadline:
        if member.process.poll() is not None:
            raise RuntimeError(f"etcd exited with code {member.process.returncode}: {_log_tail(member.log_path)}")
        try:
            answer = await asyncio.to_thread(_get_json, url, min(2.0, max(0.1, deadline - time.monotonic())))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(answer, dict) and str(answer.get("health")).lower() == "true":
                return answer
            last = f"health {answer!r}"
        await asyncio.sleep(0.2)
    raise TimeoutError(f"member not serving within the start timeout ({last}); log: {_log_tail(member.log_path)}")


async def _served_versions(member: Member) -> dict[str, str]:
    """The serving member's /version: {"etcdserver": "3.6.16", "etcdcluster": "3.6.0"}; {} when
    it does not answer (the version is not worth failing a started member for)."""
    try:
        answer = await asyncio.to_thread(_get_json, f"{member.params.client_url}/version", 2.0)
    except (OSError, ValueError, urllib.error.URLError):
        return {}
    if not isinstance(answer, dict):
        return {}
    return {
        key: value for key, value in answer.items() if key in ("etcdserver", "etcdcluster") and isinstance(value, str)
    }


def time_limit(params: MemberParams) -> float:
    request = params.root
    if isinstance(request, MeasurePeers):
        return (request.count + 2) * (request.interval + peer_rtt.REQUEST_TIMEOUT) + 10.0
    if isinstance(request, StartMember):
        return request.start_timeout + STOP_TERM_WAIT + STOP_KILL_WAIT + 5.0
    return STOP_TERM_WAIT + STOP_KILL_WAIT + 10.0


async def measure(params: MemberParams, ctx: ProbeContext) -> dict[str, Any]:
    if not valid_run_id(ctx.run_id):
        raise ProbeParamError(f"run id {ctx.run_id!r} cannot name a directory")
    request = params.root
    registered = cleanup_name(request.name)
    root = member_dir(ctx.data_dir, ctx.run_id, request.name)
    if isinstance(request, StopMember):
        was_running = registered in ctx.cleanup.names(ctx.run_id)
        await ctx.cleanup.release(ctx.run_id, registered)
        if root.exists():  # a member of a crashed agent, or a release that failed: clean anyway
            shutil.rmtree(root, ignore_errors=True)
        return {"name": request.name, "was_running": was_running, "data_removed": not root.exists()}
    if isinstance(request, MeasurePeers):
        return {
            "name": request.name,
            "peers": await peer_rtt.probe_peers(dict(request.peers), request.count, request.interval),
        }
    if isinstance(request, MemberStatus):
        return {
            "name": request.name,
            "running": registered in ctx.cleanup.names(ctx.run_id),
            "data_dir_exists": root.exists(),
        }
    if registered in ctx.cleanup.names(ctx.run_id):
        raise ProbeParamError(f"member {request.name} of run {ctx.run_id} is already running")
    return await _start(request, ctx, root, registered)


async def _start(params: StartMember, ctx: ProbeContext, root: Path, registered: str) -> dict[str, Any]:
    binary = find_etcd()
    version = await binary_version(binary)
    shutil.rmtree(root, ignore_errors=True)  # left by a crashed agent with the same run id
    data = root / "data"
    try:
        root.mkdir(parents=True, mode=0o700)  # noqa: ASYNC240 - two directories on the local disk
        data.mkdir(mode=0o700)
    except OSError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"cannot create the member's data directory {root}: {exc.strerror}") from exc
    command = etcd_command(binary, params, data, ctx.listen_host)
    log_file = (root / "etcd.log").open("wb")
    try:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns once forked; the member outlives this job
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise ProbeUnavailable(f"cannot start {binary}: {exc.strerror}") from exc
    finally:
        log_file.close()
    member = Member(params, root, process)
    ctx.cleanup.add(ctx.run_id, registered, member.stop)
    started = time.monotonic()
    try:
        health = await _wait_serving(member, started + params.start_timeout)
        served = await _served_versions(member)
    except BaseException:
        # the registry still owns it: release now so nothing outlives the failed start
        await asyncio.shield(ctx.cleanup.release(ctx.run_id, registered))
        raise
    return {
        "name": params.name,
        "pid": process.pid,
        "client_url": params.client_url,
        "peer_url": params.peer_url,
        "data_dir": str(data),
        "ready_after_s": round(time.monotonic() - started, 3),
        "health": health,
        "heartbeat_ms": params.heartbeat_ms,
        "election_ms": params.election_ms,
        "binary": binary,
        # what the running member says on /version (its binary's --version when it does not answer)
        "version": served.get("etcdserver") or version,
        "cluster_version": served.get("etcdcluster"),
    }


JOB = AgentJob("etcd.member", MemberParams, measure, time_limit)
