"""Starting the lab's programs inside its namespaces: the delay line (in the router namespace)
and one agent per node (a process, or whatever an agent launcher starts: bench/lab/addons.py),
and telling when the agents answer.  Every wait is bounded."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from talbench.bench.errors import InfrastructureError
from talbench.bench.lab import processes
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.addons import AgentLauncher
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabNode, LabState
from talbench.bench.lab.topology import TUN_DEVICE, LabPlan

AGENT_MODULE = "talbench.agents"
DELAYLINE_MODULE = "talbench.bench.lab.delayline"
DELAYLINE_READY_TIMEOUT = 10.0


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def launch_delayline(ip: Ip, plan: LabPlan, lab_dir: Path) -> int:
    assert plan.router_namespace
    argv = [sys.executable, "-m", DELAYLINE_MODULE, "--tun", TUN_DEVICE]
    for node in plan.nodes:
        if node.delay:
            argv += ["--delay", f"{node.address}={node.delay.delay_ms:g}:{node.delay.jitter_ms:g}"]
    log = lab_dir / lab_state.DELAYLINE_LOG
    pid = processes.spawn(ip.exec_argv(plan.router_namespace, argv), log, env=python_env())
    deadline = time.monotonic() + DELAYLINE_READY_TIMEOUT
    while time.monotonic() < deadline:
        if _tun_attached(ip, plan.router_namespace):
            return pid
        if not processes.alive(pid):
            raise InfrastructureError(f"the delay line exited at start: {processes.log_tail(log) or 'no output'}")
        time.sleep(0.05)
    raise InfrastructureError(f"the delay line did not attach to {TUN_DEVICE} within {DELAYLINE_READY_TIMEOUT:g}s")


def _tun_attached(ip: Ip, router_namespace: str) -> bool:
    out = ip.run("-o", "link", "show", TUN_DEVICE, netns=router_namespace, check=False)
    flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
    return "LOWER_UP" in flags


def launch_agents(ip: Ip, state: LabState, launcher: AgentLauncher | None = None) -> LabState:
    """One agent per node: a process in the node's namespace, or ``launcher``'s."""
    nodes = []
    for node in state.nodes:
        if launcher is not None:
            pid = launcher.start(ip, state, node)
            nodes.append(_replace_pid(node, pid))
            lab_state.save_state(state.with_changes(nodes=tuple(nodes) + state.nodes[len(nodes) :]))
            continue
        argv = [
            sys.executable,
            "-m",
            AGENT_MODULE,
            "--listen",
            f"{node.address}:{node.port}",
            "--unix",
            str(node.socket),
            "--token-file",
            str(state.token_file),
            "--node",
            node.name,
            "--data-dir",
            str(node.data_dir),
        ]
        pid = processes.spawn(ip.exec_argv(node.namespace, argv), node.log, env=python_env())
        nodes.append(_replace_pid(node, pid))
        # record each pid as soon as it exists, so a crash here leaves nothing unaccounted
        lab_state.save_state(state.with_changes(nodes=tuple(nodes) + state.nodes[len(nodes) :]))
    return state.with_changes(nodes=tuple(nodes))


def _replace_pid(node: LabNode, pid: int | None) -> LabNode:
    return replace(node, pid=pid)


def agent_problem(node: LabNode, timeout: float = 2.0) -> str | None:
    """None when the node's agent answers health; else why not (one line)."""
    if node.pid is not None and not processes.alive(node.pid):
        tail = processes.log_tail(node.log, 3)
        return "agent exited" + (f": {tail}" if tail else "")
    return processes.agent_health(node.socket, timeout)


def wait_agents_ready(state: LabState, timeout: float) -> dict[str, str]:
    """Wait (bounded) until every agent answers health; returns node -> reason for the others."""
    deadline = time.monotonic() + timeout
    pending = {node.name: node for node in state.nodes}
    problems: dict[str, str] = {}
    while pending:
        for name, node in list(pending.items()):
            problem = agent_problem(node, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if problem is None:
                del pending[name]
                problems.pop(name, None)
            else:
                problems[name] = problem
                if problem.startswith("agent exited"):
                    del pending[name]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return problems
