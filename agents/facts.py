"""Facts about the node the agent runs on: GET /v1/facts (``basic_facts``) and the node probe
(``node_facts``, which adds the filesystems of the data and etcd directories).

Everything here reads the node, not the agent's container: ``/proc/cpuinfo`` and
``/proc/meminfo`` (through psutil) show the node's CPUs and memory even inside a pod.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from talbench.agents import devices

CPUINFO = Path("/proc/cpuinfo")
TOOL_TIMEOUT = 5.0  # seconds for one `tool --version`


def talbench_version() -> str:
    try:
        return metadata.version("talbench")
    except metadata.PackageNotFoundError:
        return "unknown"


def basic_facts() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": platform.system(),
        "arch": platform.machine(),
        "cpus": os.cpu_count() or 1,
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_bytes": memory.total,
        "boot_time": psutil.boot_time(),
        "python": platform.python_version(),
        "talbench": talbench_version(),
        "tools": tool_versions(),
    }


def node_facts(data_dir: str | os.PathLike[str], etcd_dir: str | None) -> dict[str, Any]:
    """``basic_facts`` plus the storage that matters for etcd: the data directory's
    filesystem and disks, and etcd's (``etcd_dir``) when the agent can see it.  ``etcd_filesystem``
    is etcd's when visible, else the data directory's (on Talos both live on /var by default)."""
    facts = basic_facts()
    data = devices.describe_path(data_dir)
    etcd = devices.describe_visible(etcd_dir or "")
    chosen = etcd or data
    return {
        **facts,
        "data_dir": data,
        "etcd_dir": etcd,
        "etcd_filesystem": {
            "path": chosen["path"],
            "seen_as": "etcd_dir" if etcd else "data_dir",
            "size_bytes": chosen["filesystem"]["size_bytes"],
            "free_bytes": chosen["filesystem"]["free_bytes"],
            "media": chosen["media"],
        },
    }


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (x86), else what ARM kernels print, else the arch."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU implementer"):
        return f"implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return platform.processor() or platform.machine()


def tool_version(binary: str, *args: str) -> str | None:
    """First line of ``binary --version`` (None when missing, not answering in time or not
    knowing ``--version``: a non-zero exit)."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, *(args or ("--version",))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    if done.returncode != 0:
        return None
    lines = [line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[0] if lines else None


def tool_versions() -> dict[str, str | None]:
    """Versions of the measuring tools this agent drives: those its probes declare."""
    return {binary: tool_version(binary) for binary in declared_tools()}


def declared_tools() -> tuple[str, ...]:
    """The binaries of every tool the probes declare (agents/probes/registry.py)."""
    from talbench.agents.probes.registry import declarations  # here, not above: the node probe imports this module

    return tuple(sorted({tool.binary for declaration in declarations().values() for tool in declaration.tools}))
