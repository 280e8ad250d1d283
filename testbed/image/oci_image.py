"""The talbench OCI image, unpacked for the lab's containers: an oci-archive tar (``make image``)
or an OCI layout directory; this machine's manifest is picked out of a multi-platform index; the
rootfs is unpacked by umoci once per manifest digest under
``${TALBENCH_CACHE:-/var/cache/talbench}/images/<hex digest>/`` (``rootfs/``, ``image.json``), and
shared, read-only, by every container of every lab (testbed/image/runner.py)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talbench.bench.errors import InfrastructureError, MissingDependency, UsageError
from talbench.bench.lab.state import write_json_atomic

DEFAULT_CACHE = "/var/cache/talbench"
TOOL_TIMEOUT = 60.0
UNPACK_TIMEOUT = 600.0
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
TAG = "talbench"
RUNC_HINT = "apt-get install --no-install-recommends runc umoci (Debian/Ubuntu)"


@dataclass(frozen=True)
class Image:
    """An unpacked image: its rootfs (shared, read-only in every container) and its config."""

    archive: Path
    digest: str  # the manifest's, "sha256:<hex>"
    rootfs: Path
    entrypoint: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: tuple[int, int] = (0, 0)  # the config's User (uid[:gid], numeric): what a pod without runAsUser runs as


def goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def cache_dir() -> Path:
    return Path(os.environ.get("TALBENCH_CACHE") or DEFAULT_CACHE) / "images"


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise MissingDependency(f"--image needs {' and '.join(missing)}, which is not installed", hint=RUNC_HINT)


def prepare_image(archive: Path) -> Image:
    """The image in ``archive`` (an oci-archive tar, or an OCI layout directory), unpacked once
    per manifest digest; later calls, from any lab, reuse the rootfs."""
    require_tools("runc", "umoci")
    archive = Path(archive).resolve()
    if not archive.exists():
        raise UsageError(f"--image {archive}: no such file")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        try:
            with _reader(archive) as read:
                digest, config = _manifest_and_config(read)
        except (OSError, tarfile.TarError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = (str(exc).splitlines() or [""])[0].rstrip(":")
            raise UsageError(f"--image {archive}: not an OCI image archive ({type(exc).__name__}: {why})") from exc
        final = cache / digest.split(":", 1)[1]
        image_config = config.get("config") or {}
        if not (final / "image.json").exists():
            with _layout(archive, cache) as layout:
                _unpack(layout, digest, final, {"digest": digest, "archive": str(archive), "config": image_config})
    entrypoint = tuple(image_config.get("Entrypoint") or ())
    if not entrypoint:
        raise UsageError(f"--image {archive}: the image has no entrypoint (talbench's has /opt/talbench/bin/talbench)")
    return Image(
        archive=archive,
        digest=digest,
        rootfs=final / "rootfs",
        entrypoint=entrypoint,
        env=tuple(image_config.get("Env") or ()),
        cwd=image_config.get("WorkingDir") or "/",
        user=_user(archive, str(image_config.get("User") or "0")),
    )


def _user(archive: Path, text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise UsageError(f"--image {archive}: the image's user {text!r} is not numeric (uid[:gid])")
    return int(uid), int(gid or 0)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _reader(archive: Path) -> Iterator[Callable[[str], bytes]]:
    """read(name) of a file of the layout, from the directory or straight out of the tar."""
    if archive.is_dir():
        yield lambda name: (archive / name).read_bytes()
        return
    with tarfile.open(archive) as tar:
        members = {os.path.normpath(m.name): m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            handle = tar.extractfile(members[name])
            assert handle is not None
            return handle.read()

        yield read


@contextlib.contextmanager
def _layout(archive: Path, cache: Path) -> Iterator[Path]:
    if archive.is_dir():
        yield archive
        return
    scratch = cache / f".extract-{secrets.token_hex(4)}"
    try:
        scratch.mkdir()
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise UsageError(f"--image {archive}: not an OCI image archive ({exc})") from exc
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _blob(read: Callable[[str], bytes], digest: str) -> dict[str, Any]:
    algorithm, _, hexdigest = digest.partition(":")
    raw = read(f"blobs/{algorithm}/{hexdigest}")
    if algorithm != "sha256" or hashlib.sha256(raw).hexdigest() != hexdigest:
        raise ValueError(f"blob {digest} does not match its digest")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"blob {digest} is not a JSON object")
    return data


def _manifest_and_config(read: Callable[[str], bytes]) -> tuple[str, dict[str, Any]]:
    """The digest of this machine's manifest (an index of several platforms is looked into),
    and the image config it points to."""
    index = json.loads(read("index.json"))
    arch = goarch()
    for _ in range(3):  # an index may point to an index (a multi-platform image)
        manifests = index.get("manifests") or []
        chosen = [m for m in manifests if (m.get("platform") or {}).get("architecture") in (arch, None)]
        if not chosen:
            raise UsageError(f"the image has no {arch} manifest")
        descriptor = chosen[0]
        if descriptor.get("mediaType") != INDEX_MEDIA_TYPE:
            digest = str(descriptor["digest"])
            config = _blob(read, str(_blob(read, digest)["config"]["digest"]))
            if config.get("architecture", arch) != arch:
                raise UsageError(f"the image is for {config.get('architecture')}, this machine is {arch}")
            return digest, config
        index = _blob(read, str(descriptor["digest"]))
    raise UsageError("the image's indexes nest too deep")


def _unpack(layout: Path, digest: str, final: Path, record: Mapping[str, Any]) -> None:
    """umoci unpacks the manifest ``digest`` (tagged in a private copy of the index) into a
    temporary directory that becomes ``final`` (with ``record`` as image.json) in one rename."""
    work = final.with_name(f".{final.name}.{secrets.token_hex(4)}")
    work.mkdir()
    try:
        tagged = work / "layout"
        tagged.mkdir()
        for entry in ("oci-layout", "blobs"):
            (tagged / entry).symlink_to(layout / entry)
        descriptor = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).stat().st_size,
            "annotations": {REF_NAME: TAG},
        }
        write_json_atomic(tagged / "index.json", {"schemaVersion": 2, "manifests": [descriptor]})
        run_tool(["umoci", "raw", "unpack", "--image", f"{tagged}:{TAG}", str(work / "rootfs")], timeout=UNPACK_TIMEOUT)
        shutil.rmtree(tagged)
        write_json_atomic(work / "image.json", record)
        shutil.rmtree(final, ignore_errors=True)  # a half-written one (no image.json)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def run_tool(argv: list[str], *, timeout: float = TOOL_TIMEOUT, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfrastructureError(f"{' '.join(argv[:4])} did not finish within {timeout:g}s") from exc
    if check and done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        raise InfrastructureError(f"{' '.join(argv[:4])}: {lines[-1]}")
    return done.stdout
