"""Probe ``etcd-member``: one member of a scratch etcd cluster on this node.

Members outlive the job that starts them: ``action: start`` launches the etcd binary as a child
of the agent (own session, killed if the agent dies), waits until it serves its client URL (which
etcd only does once the cluster has a leader), registers a release in the cleanup registry under
the run id and returns.  ``action: stop`` releases it: SIGTERM, a bounded wait, SIGKILL, and the
data directory is removed always.  ``action: status`` reports whether it is still running.

The data directory lives below the node's data directory (the disk under test), named by run id
and member name.  Ports are chosen by the coordinator and must not clash with what Talos uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from talbench.agents.etcdload import peer_rtt
from talbench.agents.probe import ProbeContext, ProbeParamError, ProbeUnavailable

NAME = "etcd-member"
ACTIONS = ("start", "stop", "status", "peers")

# Talos (and Kubernetes) ports a scratch member must never take.
RESERVED_PORTS: tuple[tuple[int, int], ...] = (
    (2379, 2383),
    (4789, 4789),
    (6443, 6443),
    (7445, 7445),
    (8472, 8472),
    (10250, 10250),
    (50000, 50001),
    (51820, 51820),
)

MAX_MEMBERS = 9
STOP_TERM_WAIT = 10.0  # seconds after SIGTERM before SIGKILL
STOP_KILL_WAIT = 5.0
LOG_TAIL_BYTES = 1500
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def port_is_reserved(port: int) -> bool:
    return any(low <= port <= high for low, high in RESERVED_PORTS)


def url_host(host: str) -> str:
    """``host`` as it stands in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def cleanup_name(member: str) -> str:
    return f"{NAME}/{member}"


def member_dir(data_dir: Path, run_id: str, member: str) -> Path:
    """Everything of one member (etcd's data dir and its log) lives below this directory."""
    return data_dir / f"etcd-{run_id}-{member}"


@dataclass(frozen=True)
class MemberParams:
    action: str
    name: str
    host: str = ""  # the address peers and clients use (the node address)
    client_port: int = 0
    peer_port: int = 0
    initial_cluster: tuple[tuple[str, str], ...] = ()  # (member name, peer URL)
    cluster_token: str = ""
    heartbeat_ms: int = 100
    election_ms: int = 1000
    quota_bytes: int = 8 * 2**30
    start_timeout_s: float = 30.0
    peers: tuple[tuple[str, str], ...] = ()  # action "peers": (member name, peer URL) to measure
    count: int = 20
    interval_s: float = 0.05

    @property
    def client_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.peer_port}"


def _int(raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProbeParamError(f"{key} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def _port(raw: Mapping[str, Any], key: str) -> int:
    port = _int(raw, key, 0, 1024, 65535)
    if port_is_reserved(port):
        raise ProbeParamError(f"{key} {port} is a port Talos or Kubernetes uses; choose another")
    return port


def _host(value: Any) -> str:
    if not isinstance(value, str):
        raise ProbeParamError(f"host must be an IP address, got {value!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ProbeParamError(f"host must be an IP address, got {value!r}") from exc


def _peer_url(value: Any, member: str, what: str = "initial_cluster") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"http://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):\d{1,5}", value):
        raise ProbeParamError(f"{what}[{member}] must be http://ADDRESS:PORT, got {value!r}")
    return value


def _members(raw: Any, what: str, *, minimum: int) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping) or not minimum <= len(raw) <= MAX_MEMBERS:
        raise ProbeParamError(f"{what} must map {minimum} to {MAX_MEMBERS} member names to peer URLs")
    members = []
    for member, url in sorted(raw.items()):
        if not isinstance(member, str) or not _MEMBER_NAME.match(member):
            raise ProbeParamError(f"{what}: bad member name {member!r}")
        members.append((member, _peer_url(url, member, what)))
    return tuple(members)


def _seconds_param(raw: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ProbeParamError(f"{key} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def parse_params(raw: Mapping[str, Any]) -> MemberParams:
    action = raw.get("action")
    if action not in ACTIONS:
        raise ProbeParamError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not _MEMBER_NAME.match(name):
        raise ProbeParamError(f"name must be 1-63 letters, digits, '.', '_' or '-', got {name!r}")
    known = {"action", "name", "host", "client_port", "peer_port", "initial_cluster", "cluster_token",
             "heartbeat_ms", "election_ms", "quota_bytes", "start_timeout_s", "peers", "count", "interval_s"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProbeParamError(f"unknown parameter(s): {', '.join(unknown)}")
    if action == "peers":
        return MemberParams(
            action=action,
            name=name,
            peers=_members(raw.get("peers"), "peers", minimum=0),
            count=_int(raw, "count", 20, 1, 500),
            interval_s=_seconds_param(raw, "interval_s", 0.05, 0.001, 1.0),
        )
    if action != "start":
        return MemberParams(action=action, name=name)
    cluster = _members(raw.get("initial_cluster"), "initial_cluster", minimum=1)
    token = raw.get("cluster_token")
    if not isinstance(token, str) or not _RUN_ID.match(token):
        raise ProbeParamError(f"cluster_token must be 1-128 letters, digits, '.', '_' or '-', got {token!r}")
    heartbeat = _int(raw, "heartbeat_ms", 100, 10, 5000)
    election = _int(raw, "election_ms", 1000, 50, 50000)
    if election < 5 * heartbeat:
        raise ProbeParamError(f"election_ms ({election}) must be at least 5x heartbeat_ms ({heartbeat})")
    timeout = _seconds_param(raw, "start_timeout_s", 30.0, 1.0, 300.0)
    params = MemberParams(
        action=action,
        name=name,
        host=_host(raw.get("host")),
        client_port=_port(raw, "client_port"),
        peer_port=_port(raw, "peer_port"),
        initial_cluster=tuple(cluster),
        cluster_token=token,
        heartbeat_ms=heartbeat,
        election_ms=election,
        quota_bytes=_int(raw, "quota_bytes", 8 * 2**30, 2**20, 64 * 2**30),
        start_timeout_s=float(timeout),
    )
    if params.client_port == params.peer_port:
        raise ProbeParamError("client_port and peer_port must differ")
    if dict(params.initial_cluster).get(name) != params.peer_url:
        raise ProbeParamError(f"initial_cluster must contain {name}={params.peer_url}")
    return params


def find_etcd() -> str:
    """The etcd binary: $TALBENCH_ETCD if set, else ``etcd`` on PATH."""
    explicit = os.environ.get("TALBENCH_ETCD")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise ProbeUnavailable(f"TALBENCH_ETCD={explicit} is not an executable file")
    found = shutil.which("etcd")
    if not found:
        raise ProbeUnavailable("the etcd binary is not installed (Debian: apt-get install etcd-server; or upstream etcd on PATH)")
    return found


def etcd_command(binary: str, params: MemberParams, data: Path, listen_host: str) -> list[str]:
    listen = url_host(listen_host)
    cluster = ",".join(f"{member}={url}" for member, url in params.initial_cluster)
    command = [
        binary,
        "--name", params.name,
        "--data-dir", str(data),
        "--listen-client-urls", f"http://{listen}:{params.client_port}",
        "--advertise-client-urls", params.client_url,
        "--listen-peer-urls", f"http://{listen}:{params.peer_port}",
        "--initial-advertise-peer-urls", params.peer_url,
        "--initial-cluster", cluster,
        "--initial-cluster-token", params.cluster_token,
        "--initial-cluster-state", "new",
        "--heartbeat-interval", str(params.heartbeat_ms),
        "--election-timeout", str(params.election_ms),
        "--quota-backend-bytes", str(params.quota_bytes),
        "--logger", "zap",
        "--log-outputs", "stderr",
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

    def __init__(self, params: MemberParams, root: Path, process: subprocess.Popen[bytes]) -> None:
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
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http to our member
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


class EtcdMemberProbe:
    name = NAME

    def parse(self, params: Mapping[str, Any]) -> MemberParams:
        return parse_params(params)

    def time_limit(self, params: MemberParams) -> float:
        if params.action == "peers":
            return (params.count + 2) * (params.interval_s + peer_rtt.REQUEST_TIMEOUT) + 10.0
        if params.action == "start":
            return params.start_timeout_s + STOP_TERM_WAIT + STOP_KILL_WAIT + 5.0
        return STOP_TERM_WAIT + STOP_KILL_WAIT + 10.0

    async def run(self, params: MemberParams, ctx: ProbeContext) -> dict[str, Any]:
        if not _RUN_ID.match(ctx.run_id):
            raise ProbeParamError(f"run id {ctx.run_id!r} cannot name a directory")
        registered = cleanup_name(params.name)
        root = member_dir(ctx.data_dir, ctx.run_id, params.name)
        if params.action == "stop":
            was_running = registered in ctx.cleanup.names(ctx.run_id)
            await ctx.cleanup.release(ctx.run_id, registered)
            if root.exists():  # a member of a crashed agent, or a release that failed: clean anyway
                shutil.rmtree(root, ignore_errors=True)
            return {"name": params.name, "was_running": was_running, "data_removed": not root.exists()}
        if params.action == "peers":
            return {"name": params.name, "peers": await peer_rtt.probe_peers(dict(params.peers), params.count, params.interval_s)}
        if params.action == "status":
            return {"name": params.name, "running": registered in ctx.cleanup.names(ctx.run_id), "data_dir_exists": root.exists()}
        if registered in ctx.cleanup.names(ctx.run_id):
            raise ProbeParamError(f"member {params.name} of run {ctx.run_id} is already running")
        return await self._start(params, ctx, root, registered)

    async def _start(self, params: MemberParams, ctx: ProbeContext, root: Path, registered: str) -> dict[str, Any]:
        binary = find_etcd()
        shutil.rmtree(root, ignore_errors=True)  # left by a crashed agent with the same run id
        data = root / "data"
        try:
            root.mkdir(parents=True, mode=0o700)
            data.mkdir(mode=0o700)
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"cannot create the member's data directory {root}: {exc.strerror}") from exc
        command = etcd_command(binary, params, data, ctx.listen_host)
        log_file = (root / "etcd.log").open("wb")
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, validated arguments
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
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
            health = await _wait_serving(member, started + params.start_timeout_s)
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
        }
