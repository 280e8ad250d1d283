"""The etcd binary the scratch cluster runs: where it is and which version it is.

``make etcd`` builds etcd from its Go modules at the version Talos ships (agents/build/
build-etcd.sh) and installs it on PATH; the agent image carries the same binaries.  An etcd older
than 3.5 (Debian bookworm ships 3.4.23) is refused: a scratch cluster of another major line than
the control planes' measures something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess

from talbench.agents.probe import ProbeUnavailable

ETCD_VERSION = "3.6.16"  # the etcd `make etcd` builds (agents/build/build-etcd.sh): the line Talos ships
OLDEST_VERSION = (3, 5)  # older etcd (Debian bookworm's 3.4) is refused: not what a Talos control plane runs
VERSION_TIMEOUT = 10.0  # seconds for `etcd --version`


def find_etcd() -> str:
    """The etcd binary: $TALBENCH_ETCD if set, else ``etcd`` on PATH."""
    explicit = os.environ.get("TALBENCH_ETCD")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise ProbeUnavailable(f"TALBENCH_ETCD={explicit} is not an executable file")
    found = shutil.which("etcd")
    if not found:
        raise ProbeUnavailable(f"no etcd binary on PATH: `make etcd` builds etcd {ETCD_VERSION} and installs it")
    return found


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``3.6.16`` (or ``v3.6.16``, ``3.6.0-rc.1``) -> (3, 6, 16); None when ``text`` is not a version."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+][\w.]*)?", text.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


async def binary_version(binary: str) -> str:
    """The version ``binary --version`` prints (``3.6.16``); ProbeUnavailable when it cannot be
    told or is older than OLDEST_VERSION: one line naming what was found and ``make etcd``."""
    try:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--version",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), VERSION_TIMEOUT)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
    except (OSError, TimeoutError) as exc:
        raise ProbeUnavailable(
            f"cannot run {binary} --version ({exc}): `make etcd` builds etcd {ETCD_VERSION}"
        ) from exc
    lines = output.decode("utf-8", "replace").splitlines()
    line = next((line for line in lines if line.startswith("etcd Version:")), "")
    found = line.removeprefix("etcd Version:").strip()
    parsed = parse_version(found)
    if parsed is None:
        first = lines[0].strip()[:80] if lines else f"exit code {process.returncode}"
        raise ProbeUnavailable(
            f"{binary} --version does not name an etcd version ({first!r}): `make etcd` builds etcd {ETCD_VERSION}"
        )
    if parsed[:2] < OLDEST_VERSION:
        oldest = ".".join(map(str, OLDEST_VERSION))
        raise ProbeUnavailable(
            f"{binary} is etcd {found}, older than the {oldest} the scratch cluster needs (Talos runs etcd 3.5/3.6): "
            f"`make etcd` builds etcd {ETCD_VERSION}"
        )
    return found
