"""The talbench image as `make image` builds it (agents/build/build-image.sh): an OCI archive whose
config, labels and rootfs are what the DaemonSet, the CronJob and the lab expect.

Skipped unless an image was built: ``TALBENCH_IMAGE_ARCHIVE`` names its archive, else this
machine's ``results/image/talbench-<version>-<arch>.oci.tar`` is used when it exists.  The image
is not built here (minutes, network): the lead decides whether CI builds it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talbench.agents.probes.registry import declarations

ROOT = Path(__file__).resolve().parents[3]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
QEMU = {"arm64": "aarch64", "amd64": "x86_64"}


def _archive() -> Path | None:
    named = os.environ.get("TALBENCH_IMAGE_ARCHIVE")
    if named:
        return Path(named)
    default = ROOT / "results" / "image" / f"talbench-{VERSION}-{ARCH}.oci.tar"
    return default if default.exists() else None


ARCHIVE = _archive()
pytestmark = pytest.mark.skipif(
    ARCHIVE is None, reason=f"no image built (make image, or TALBENCH_IMAGE_ARCHIVE=...oci.tar; looked for {ARCH})"
)


def _blob(layout: Path, digest: str) -> dict[str, Any]:
    algorithm, _, hexdigest = digest.partition(":")
    data: dict[str, Any] = json.loads((layout / "blobs" / algorithm / hexdigest).read_text())
    return data


def _manifest(layout: Path) -> dict[str, Any]:
    """The descriptor of this machine's manifest (through an index), else of the first one."""
    descriptors = json.loads((layout / "index.json").read_text())["manifests"]
    while True:
        mine = [d for d in descriptors if (d.get("platform") or {}).get("architecture") == ARCH]
        descriptor: dict[str, Any] = (mine or descriptors)[0]
        if descriptor["mediaType"] != INDEX:
            return descriptor
        descriptors = _blob(layout, descriptor["digest"])["manifests"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The archive's OCI layout, its index reduced to the one manifest tested, tagged ``test``."""
    assert ARCHIVE is not None
    where = tmp_path_factory.mktemp("image") / "layout"
    try:
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(where, filter="data")
        descriptor = dict(_manifest(where), annotations={REF_NAME: "test"})
        (where / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def config(layout: Path) -> dict[str, Any]:
    manifest = _blob(layout, _manifest(layout)["digest"])
    return _blob(layout, manifest["config"]["digest"])


@pytest.fixture(scope="module")
def rootfs(layout: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("umoci") is None:
        pytest.skip("unpacking the image needs root and umoci (make image installs it)")
    bundle = layout.parent / "bundle"
    try:
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:test", str(bundle)], check=True, capture_output=True)
        yield bundle / "rootfs"
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def _inside(rootfs: Path, path: str) -> Path:
    """``path`` of the image, its symlinks followed inside ``rootfs`` (an absolute link target
    is the image's, not this machine's)."""
    parts = [p for p in path.split("/") if p]
    resolved = rootfs
    for _ in range(64):
        if not parts:
            return resolved
        here = resolved / parts.pop(0)
        if here.is_symlink():
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p] + parts
            resolved = rootfs if target.startswith("/") else resolved
        else:
            resolved = here
    raise AssertionError(f"{path}: too many symlinks")


def _run(rootfs: Path, config: dict[str, Any], *argv: str) -> str:
    arch = config["architecture"]
    if arch != ARCH and not Path(f"/proc/sys/fs/binfmt_misc/qemu-{QEMU.get(arch, arch)}").exists():
        pytest.skip(f"a {arch} image needs qemu-user-static registered with binfmt_misc (make image ARCH={arch})")
    env = ["env", "-i", *config["config"]["Env"], "HOME=/root"]
    done = subprocess.run(["chroot", str(rootfs), *env, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def test_skopeo_reads_the_entrypoint_and_the_oci_labels():
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo (make image installs it)")
    done = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci-archive:{ARCHIVE}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert config["Entrypoint"] == ["/opt/talbench/bin/talbench"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.title"] == "talbench"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])


def test_the_config_runs_the_venv_as_root_in_tmp(config: dict[str, Any]):
    image = config["config"]
    assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
    assert image["User"] == "0" and image["WorkingDir"] == "/tmp"
    path = next(e for e in image["Env"] if e.startswith("PATH="))
    # the DaemonSet's command is `python -m talbench.agents`: the venv's python first on PATH
    assert path.split("=", 1)[1].split(":")[0] == "/opt/talbench/bin"
    assert "PYTHONDONTWRITEBYTECODE=1" in image["Env"]
    assert not any(re.search(r"token|secret|password", e, re.I) for e in image["Env"])


def _debian_files(rootfs: Path) -> dict[str, str]:
    """Image path -> md5 of every file a Debian package ships (its md5sums, its conffiles)."""
    dpkg = rootfs / "var" / "lib" / "dpkg"
    shipped = {}
    for sums in (dpkg / "info").glob("*.md5sums"):
        for line in sums.read_text().splitlines():
            md5, _, name = line.partition("  ")
            shipped["/" + name] = md5
    for found in re.finditer(r"^ (/\S+) ([0-9a-f]{32})", (dpkg / "status").read_text(), re.M):
        shipped[found.group(1)] = found.group(2)
    return shipped


def test_nothing_of_a_secret_or_of_the_build_host_is_in_the_rootfs(rootfs: Path):
    # "token" is in some of Debian's own files (mime.types, security/*.conf): those, unchanged, are
    # Debian's; any other file under /root or /etc that mentions a token is not.
    shipped = _debian_files(rootfs)
    for top in ("root", "etc"):
        for path in (rootfs / top).rglob("*"):
            if path.is_file() and not path.is_symlink() and b"token" in (raw := path.read_bytes()).lower():
                name = f"/{path.relative_to(rootfs)}"
                assert shipped.get(name) == hashlib.md5(raw).hexdigest(), f"{name} mentions a token"
    for gone in (
        "etc/resolv.conf",
        "etc/hostname",
        "etc/pip.conf",
        "tmp/build-ca.crt",
        "root/.cache",
        "root/.docker",
        "root/.netrc",
        "root/.config",
    ):
        assert not (rootfs / gone).exists(), f"/{gone} is in the image"
    assert not list((rootfs / "tmp").iterdir())
    assert not list((rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Packages"))


def test_every_tool_a_probe_declares_is_on_the_image_path(rootfs: Path, config: dict[str, Any]):
    path = next(e for e in config["config"]["Env"] if e.startswith("PATH=")).split("=", 1)[1].split(":")
    tools = {tool for declaration in declarations().values() for tool in declaration.tools}
    assert tools
    for tool in sorted(tools, key=lambda t: t.binary):
        found = [d for d in path if _inside(rootfs, f"{d}/{tool.binary}").is_file()]
        assert found, f"{tool.binary} ({tool.debian_package}) is not on the image's PATH"
        assert os.access(_inside(rootfs, f"{found[0]}/{tool.binary}"), os.X_OK)


def test_the_agent_and_the_talos_etcd_run_in_a_chroot(rootfs: Path, config: dict[str, Any]):
    assert "agent" in _run(rootfs, config, "/opt/talbench/bin/talbench", "--help")
    assert "--listen-port" in _run(rootfs, config, "python", "-m", "talbench.agents", "--help")
    pinned = re.search(r"^ETCD_VERSION=(v\S+)$", (ROOT / "agents/build/build-etcd.sh").read_text(), re.M)
    assert pinned is not None
    assert f"etcd Version: {pinned.group(1).lstrip('v')}" in _run(rootfs, config, "etcd", "--version")


def test_the_byte_code_is_compiled_in_and_never_checked_against_the_sources(rootfs: Path):
    """A read-only root cannot cache byte code: without it every agent start compiles again."""
    site = next((rootfs / "opt" / "talbench" / "lib").glob("python3.*")) / "site-packages" / "talbench"
    sources = list(site.rglob("*.py"))
    assert sources
    for source in sources:
        compiled = list((source.parent / "__pycache__").glob(f"{source.stem}.cpython-*.pyc"))
        assert compiled, f"{source.relative_to(rootfs)} has no byte code"
        flags = int.from_bytes(compiled[0].read_bytes()[4:8], "little")
        assert flags == 0b01, f"{compiled[0].name}: not an unchecked-hash pyc (flags {flags})"
