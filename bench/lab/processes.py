"""Starting, probing and stopping the lab's long-running processes (agents, the delay line).

Processes are spawned in their own session so ``lab up`` can return while they keep running;
whoever spawned them reaps them on ``lab down`` (others' are reparented to init).  The agent's
health is read over its unix socket with a tiny bounded HTTP/1.0 request: no IP route needed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

HEALTH_PATH = "/v1/health"


def spawn(argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None, keep_fds: Sequence[int] = ()) -> int:
    """Start ``argv`` in a new session, stdin from /dev/null, stdout+stderr appended to ``log``.
    It inherits no descriptor but those and ``keep_fds``: a lab's processes outlive the command
    that started them, and must not hold what its caller had open (``flock LOCK talbench lab up``
    would keep LOCK locked until ``lab down``)."""
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inherited_fds() if fd > 2 and fd not in keep_fds]
    environment = dict(env if env is not None else os.environ)
    return os.posix_spawn(argv[0], list(argv), environment, file_actions=actions, setsid=True)


def inherited_fds() -> list[int]:
    """This process's descriptors a child would inherit (not close-on-exec)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.get_inheritable(int(name)):
                fds.append(int(name))
        except OSError:  # the directory's own descriptor, closed by now
            continue
    return sorted(fds)


def reap(pid: int) -> None:
    """Collect ``pid`` if it is a finished child of ours (no zombie stays behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise


def wait_gone(pids: Iterable[int], timeout: float) -> tuple[int, ...]:
    """Wait (bounded) until every pid has exited; returns those still alive."""
    pending = tuple(pids)
    deadline = time.monotonic() + timeout
    while True:
        for pid in pending:
            reap(pid)
        pending = tuple(pid for pid in pending if alive(pid))
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.05)


def terminate(pids: Iterable[int], *, term_timeout: float, kill_timeout: float = 3.0) -> tuple[int, ...]:
    """SIGTERM, a bounded wait, then SIGKILL; returns the pids that would not die."""
    pids = tuple(pids)
    signal_all(pids, signal.SIGTERM)
    left = wait_gone(pids, term_timeout)
    if left:
        signal_all(left, signal.SIGKILL)
        left = wait_gone(left, kill_timeout)
    return left


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def agent_health(sock: Path, timeout: float = 2.0) -> str | None:
    """None when the agent behind ``sock`` answers health with status ok; else why not."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(f"GET {HEALTH_PATH} HTTP/1.0\r\nHost: agent\r\nConnection: close\r\n\r\n".encode())
            chunks: list[bytes] = []
            while sum(map(len, chunks)) < 65536:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
    except FileNotFoundError:
        return "no agent socket"
    except ConnectionRefusedError:
        return "agent socket refuses connections"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return f"agent socket: {exc.strerror or exc}"
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    if len(parts) < 2 or parts[1] != "200":
        return f"health answered {status_line or 'nothing'}"
    try:
        payload = json.loads(body)
    except ValueError:
        return "health answer is not JSON"
    if not isinstance(payload, dict) or payload.get("status") != "ok":
        return f"health status {payload.get('status') if isinstance(payload, dict) else payload!r}"
    return None
