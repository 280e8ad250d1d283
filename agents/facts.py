"""Basic facts about the node the agent runs on (GET /v1/facts)."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from typing import Any


def talbench_version() -> str:
    try:
        return metadata.version("talbench")
    except metadata.PackageNotFoundError:
        return "unknown"


def basic_facts() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": platform.system(),
        "arch": platform.machine(),
        "cpus": os.cpu_count() or 1,
        "python": platform.python_version(),
        "talbench": talbench_version(),
    }
