"""Helpers for the tests that run talbench against the session's real Kubernetes lab
(tests/bench/kube/test_real_run.py, test_real_teardown.py): ``Running`` (a run as a child
process whose output is read as it comes) and the lab kubelet's containers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence

import pytest

from talbench.bench.lab import processes
from testbed.image import runner as containers
from tests.bench.kube.real_cluster import RealCluster
from tests.bench.lab.helpers import until

RUN_LINE = re.compile(r"^talbench \S+: run (\S+), scenario ")


class Running:
    """``talbench ARGV`` as a user runs it, as a child process in a session of its own (so that
    a signal reaches only it); stdout and stderr are collected line by line as they come."""

    def __init__(self, cluster: RealCluster, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "talbench.bench.cli", *argv],
            env={**os.environ, "TALBENCH_LAB_ROOT": str(cluster.root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=_collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.err))

    def run_id(self, timeout: float = 60.0) -> str:
        def found() -> str | None:
            for line in list(self.err):
                if match := RUN_LINE.match(line):
                    return match.group(1)
            assert self.proc.poll() is None, f"talbench exited {self.proc.returncode}: {self.stderr}"
            return None

        return str(until("the run's id on stderr", found, timeout))

    def wait(self, timeout: float) -> int:
        """The exit code; fails (and kills the run) when it takes longer than ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"talbench still running after {timeout:g}s:\n{self.stderr[-3000:]}")
        for reader in self._readers:
            reader.join(10)
        return code

    def stop(self) -> None:
        """Kill what is still running (a failed test's run; its objects are the test's problem)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _collect(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


def kubelet_containers(cluster: RealCluster) -> dict[str, int]:
    """The lab kubelet's runc containers (pods' containers) on this host: id -> init pid."""
    prefix = f"{containers.CONTAINER_PREFIX}{cluster.kube.lab_id}-k"
    return {
        cid: int(entry.get("pid") or 0) for cid, entry in containers.list_containers().items() if cid.startswith(prefix)
    }


def assert_nothing_left(cluster: RealCluster, run_id: str, before: dict[str, int], pids: Sequence[int] = ()) -> None:
    """No namespace of the run, and (soon) no container the lab kubelet started since ``before``."""
    assert f"namespace/talbench-{run_id}" not in cluster.talbench_namespaces()
    until(
        "the run's agent containers removed from the lab",
        lambda: not set(kubelet_containers(cluster)) - set(before),
        60,
    )
    alive = [pid for pid in pids if pid and processes.alive(pid)]
    assert alive == [], f"agent processes still running: {alive}"
