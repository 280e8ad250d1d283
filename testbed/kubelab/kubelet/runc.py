"""The lab kubelet's containers under runc: ids, bundles, and the runc calls, each bounded.

A pod container is ``talbench-<lab id>-k<12 hex>`` (testbed/image/runner.py finds and removes
every ``talbench-<lab id>-*`` container on ``lab down``), its cgroup under
``/talbench-<lab id>/kubelet-<node>/``, its bundle (config.json) in the pod's directory.  It runs
in the foreground (``runc run`` without --detach): runc stays the kubelet's child, relays
signals, reaps the container and exits with its status, so the container's processes are the
kubelet's descendants and its exit code is runc's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talbench.bench.lab.state import write_json_atomic
from testbed.image.runner import CONTAINER_PREFIX

RUNC_TIMEOUT = 30.0


def container_id(lab_id: str, pod_uid: str, name: str) -> str:
    digest = hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()[:12]
    return f"{CONTAINER_PREFIX}{lab_id}-k{digest}"


def cgroups_path(lab_id: str, node: str, cid: str) -> str:
    return f"/{CONTAINER_PREFIX}{lab_id}/kubelet-{node}/{cid.rsplit('-', 1)[-1]}"


def write_bundle(bundle: Path, config: Mapping[str, Any]) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    write_json_atomic(bundle / "config.json", config, mode=0o600)


async def runc(*args: str, timeout: float = RUNC_TIMEOUT) -> tuple[int, str]:
    """runc ``args``: (exit status, its output's last line); -1 when it did not finish in time."""
    proc = await asyncio.create_subprocess_exec(
        "runc",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -1, f"runc {args[0]} did not finish within {timeout:g}s"
    lines = out.decode(errors="replace").strip().splitlines()
    return int(proc.returncode or 0), lines[-1] if lines else ""


async def start(bundle: Path, cid: str, log: Path) -> asyncio.subprocess.Process:
    """``runc run`` the bundle in the foreground, its output (and the container's) into ``log``."""
    await runc("delete", "--force", cid)  # what a previous attempt may have left
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            "runc", "run", "--bundle", str(bundle), cid, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd
        )
    finally:
        os.close(fd)


async def signal(cid: str, name: str) -> None:
    await runc("kill", cid, name)  # a container that has stopped refuses: fine


async def delete(cid: str) -> None:
    await runc("delete", "--force", cid)
