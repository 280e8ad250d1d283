"""Helpers for tests that build real labs: a bounded context manager, bounded ping, ``talbench``
as a child process, and polling until a condition holds."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from talbench.bench.lab import lab
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec, lab_id_of_namespace
from tests.conftest import root_skip_reason

LAB_TMP = "/var/tmp"  # real disk (node data dirs serve fsync tests), and short socket paths


def skip_unless_lab_possible(*, agents: bool = True) -> None:
    reason = root_skip_reason("ip", "sysctl")
    if reason is None and agents and importlib.util.find_spec("talbench.agents.__main__") is None:
        reason = "the talbench agent is not installed"
    if reason is not None:
        pytest.skip(reason)


@contextmanager
def lab_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tbt-", dir=LAB_TMP))
    try:
        yield root
    finally:
        try:
            lab.down(root, term_timeout=5.0)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_lab(spec: LabSpec, *, start_agents: bool = True, agent_ready_timeout: float = 30.0) -> Iterator[LabState]:
    """A lab owned by this process under its own temporary root; removed on exit."""
    skip_unless_lab_possible(agents=start_agents)
    with lab_root() as root:
        yield lab.up(spec, root, persistent=False, start_agents=start_agents, agent_ready_timeout=agent_ready_timeout)


def run(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def ping_rtts_ms(namespace: str, address: str, count: int = 5) -> list[float]:
    """RTTs of ``count`` pings from inside ``namespace`` (bounded: -W 1, 0.2 s apart)."""
    argv = ["ip", "netns", "exec", namespace, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", address]
    done = run(argv, timeout=count + 5)
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", done.stdout)]


def lab_namespaces(lab_id: str) -> list[str]:
    return namespaces_of_labs([lab_id])


def namespaces_of_labs(lab_ids: Iterable[str]) -> list[str]:
    """The network namespaces on this host of the labs ``lab_ids`` (other labs' are not listed)."""
    wanted = set(lab_ids)
    out = run(["ip", "netns", "list"]).stdout
    return [
        line.split()[0] for line in out.splitlines() if line.strip() and lab_id_of_namespace(line.split()[0]) in wanted
    ]


def talbench_cli(
    root: Path, *argv: str, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``talbench ARGV`` as a user runs it, with labs under ``root`` (a child process, bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *argv],
        env={**os.environ, "TALBENCH_LAB_ROOT": str(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """``check()``'s first truthy value, polled every ``interval``; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(interval)
