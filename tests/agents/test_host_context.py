"""The host context an agent reports with every job (agents/host_context.py), for real: CPU
burned by processes that are not the agent's counts as other processes' CPU, CPU burned by the
agent's own children counts as the agent's; Dirty and Writeback come from /proc/meminfo.

Each burner reports the CPU time it got (time.process_time), so the checks hold however busy
the host is: the context must account for at least most of what the burners say they used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talbench.agents.host_context import meminfo

pytestmark = pytest.mark.processes

CPUS = os.cpu_count() or 1
BURN = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\nprint(time.process_time())\n"
# an "agent" measuring its host context until stdin closes; with "own" its children are the burners
AGENT = """\
import json, subprocess, sys
from talbench.agents.host_context import HostContext, host_times
first = host_times()
context = HostContext()
context.start()
burned = 0.0
if sys.argv[1] == "own":
    burners = [subprocess.Popen([sys.executable, "-c", sys.argv[2]], stdout=subprocess.PIPE) for _ in range(int(sys.argv[3]))]
    burned = sum(float(b.communicate()[0]) for b in burners)
print("ready", flush=True)
sys.stdin.read()
found = context.stop()
print(json.dumps({"context": found, "total_s": host_times().total - first.total, "burned_s": burned}))
"""


def burn_in(mode: str) -> tuple[dict, float, float]:
    """(the agent's context, CPU seconds of the window, CPU seconds the burners got)."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, mode, BURN, str(CPUS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        burned = 0.0
        if mode == "siblings":  # the test's children, not the agent's: other processes to it
            siblings = [subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE) for _ in range(CPUS)]
            burned = sum(float(p.communicate(timeout=30)[0]) for p in siblings)
        out, _ = agent.communicate("", timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    found = json.loads(out)
    return found["context"], found["total_s"], burned or found["burned_s"]


def seconds(context: dict, field: str, total: float) -> float:
    return context[field] / 100.0 * total


def test_other_processes_cpu_is_theirs_and_the_agents_children_are_its_own() -> None:
    busy, total, burned = burn_in("siblings")
    assert burned > 0.2, "the burners got no CPU at all: nothing to check"
    assert set(busy) >= {"host_steal_percent", "host_iowait_percent", "host_other_cpu_percent"}
    assert seconds(busy, "host_other_cpu_percent", total) >= 0.9 * burned, (busy, total, burned)
    assert seconds(busy, "host_agent_cpu_percent", total) < 0.5 * burned, (busy, total, burned)

    own, total, burned = burn_in("own")
    assert burned > 0.2, "the burners got no CPU at all: nothing to check"
    assert seconds(own, "host_agent_cpu_percent", total) >= 0.9 * burned, (own, total, burned)


def test_dirty_and_writeback_come_from_meminfo(tmp_path: Path) -> None:
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:  1000 kB\nDirty:        2048 kB\nWriteback:      16 kB\n")
    assert meminfo(fake) == (2048 * 1024, 16 * 1024)
    fake.write_text("MemTotal:  1000 kB\n")
    assert meminfo(fake) is None
    assert meminfo(tmp_path / "absent") is None
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    real = meminfo()
    assert real is not None and all(value >= 0 for value in real)
