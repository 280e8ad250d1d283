"""Where the test bed's checkout is, and the environment the test bed's own processes
(``python -m testbed...``: the lab kubelet, the loopback forwarder, the containers' teardown)
start with, so that they import this checkout's testbed from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

from talbench.bench.lab.launch import python_env as lab_python_env

CHECKOUT = Path(__file__).resolve().parents[1]


def python_env() -> dict[str, str]:
    env = lab_python_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH", "")) if p)
    return env
