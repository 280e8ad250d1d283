"""Helpers for the test bed's tests (and the kube tests that run on its Kubernetes lab): the
image archive to run, ``kubectl`` and ``python -m testbed.kubelab`` as child processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from testbed.checkout import CHECKOUT
from testbed.image import oci_image
from testbed.kubelab.control import binaries as kube_binaries
from tests.bench.lab.helpers import skip_unless_lab_possible

IMAGE_DIR = CHECKOUT / "results" / "image"  # where make image leaves its archives


def archive_or_skip() -> Path:
    skip_unless_lab_possible(agents=False)
    missing = [tool for tool in ("runc", "umoci") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (apt-get install runc umoci)")
    given = os.environ.get("TALBENCH_IMAGE_ARCHIVE")
    built = sorted(IMAGE_DIR.glob(f"*{oci_image.goarch()}*.tar")) if IMAGE_DIR.is_dir() else []
    archive = Path(given) if given else (built[-1] if built else None)
    if archive is None or not archive.exists():
        pytest.skip(f"no image archive ({given or IMAGE_DIR}): make image, or set TALBENCH_IMAGE_ARCHIVE")
    return archive


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 40.0
) -> subprocess.CompletedProcess[str]:
    """``kubectl ARGS`` with ``kubeconfig`` (the binaries ``make kubernetes`` builds): every API
    request bounded to 20 s, the whole call to ``timeout``."""
    argv = [str(kube_binaries.locate().kubectl), "--kubeconfig", str(kubeconfig), "--request-timeout=20s", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


def kubelab_cli(
    root: Path, *argv: str, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m testbed.kubelab ARGV`` from the checkout, with labs under ``root`` (a child
    process, bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "testbed.kubelab", *argv],
        cwd=CHECKOUT,
        env={**os.environ, "TALBENCH_LAB_ROOT": str(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
