"""The lab's process launcher (bench/lab/processes.py): what a spawned daemon inherits."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

import pytest

from talbench.bench.lab import processes

pytestmark = pytest.mark.processes

LIST_FDS = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"


def _spawned_fds(tmp_path: Path, **kwargs) -> list[int]:
    log = tmp_path / "child.log"
    pid = processes.spawn([sys.executable, "-c", LIST_FDS], log, **kwargs)
    give_up = time.monotonic() + 20
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < give_up, "the child did not end"
        time.sleep(0.05)
    return json.loads(log.read_text().strip().splitlines()[-1])  # the list of ints the child printed


def test_a_daemon_does_not_hold_a_lock_its_caller_had_open(tmp_path):
    """As under `flock LOCK talbench lab up`: the caller's inherited, locked descriptor."""
    lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(lock, True)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert lock not in _spawned_fds(tmp_path)
        os.close(lock)
        lock = -1
        other = os.open(tmp_path / "lock", os.O_RDWR)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the caller lets go
        os.close(other)
    finally:
        if lock >= 0:
            os.close(lock)


def test_a_descriptor_asked_for_is_handed_down(tmp_path):
    read, write = os.pipe()
    os.set_inheritable(write, True)
    try:
        assert write in _spawned_fds(tmp_path, keep_fds=(write,))
    finally:
        os.close(read)
        os.close(write)
