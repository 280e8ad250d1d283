"""Which block device holds a directory, and what kind of disk it is.

A path resolves through its filesystem's device number (``stat().st_dev`` ->
``/sys/dev/block/MAJ:MIN``); filesystems without a block device number (btrfs, overlay) fall back
to the mount's source in ``/proc/self/mountinfo``.  A partition resolves to its parent disk and a
device-mapper or md device to the disks under it (``slaves/``), so that what is reported is the
physical (or virtual) disk that takes the writes.

Virtual disks (virtio, Xen) usually claim to be rotational; they are reported as media
``"virtual"`` instead of ``"hdd"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from talbench.agents.params import param

SYS_DEV_BLOCK = Path("/sys/dev/block")
SYS_CLASS_BLOCK = Path("/sys/class/block")
MOUNTINFO = Path("/proc/self/mountinfo")
SECTOR = 512  # /sys/.../size is in 512-byte sectors whatever the disk's block size
MAX_DEPTH = 8  # device-mapper stacks are shallow; this bounds a malformed sysfs
DEFAULT_ETCD_DIR = "/var/lib/etcd"
ABSOLUTE_OR_EMPTY = r"^(/.*)?$"


def etcd_dir_param() -> Any:
    """The ``etcd_dir`` parameter of the probes that look at etcd's disk (fsync, node), declared
    once: an absolute path, or empty to not look."""
    return param(
        DEFAULT_ETCD_DIR,
        pattern=ABSOLUTE_OR_EMPTY,
        max_length=4096,
        help="etcd's data directory; where the agent can see it, its disk and filesystem are reported (empty: skip)",
    )


def filesystem_usage(path: str | os.PathLike[str]) -> dict[str, int]:
    """Size and free space of the filesystem holding ``path`` (free: what an unprivileged
    writer may still use)."""
    stat = os.statvfs(path)
    return {
        "size_bytes": stat.f_blocks * stat.f_frsize,
        "free_bytes": stat.f_bavail * stat.f_frsize,
    }


def describe_path(path: str | os.PathLike[str], *, sys_root: Path = Path("/")) -> dict[str, Any]:
    """Everything known about the storage under ``path``: filesystem, its device, the disks.

    ``{"path", "filesystem": {"type", "source", "mount_point", "size_bytes", "free_bytes"},
    "device": "dm-0"|"vda"|None, "disks": [DISK...], "media": "nvme"|"ssd"|"hdd"|"virtual"|
    "mixed"|"unknown", "nvme": bool|None, "note": str}``; DISK is described in ``describe_disk``.
    ``nvme`` is None when it cannot be told (no block device behind the path)."""
    path = os.path.realpath(path)
    st_dev = os.stat(path).st_dev
    mount = mount_of(path, sys_root=sys_root)
    filesystem = {**(mount or {}), **filesystem_usage(path)}
    sysfs = _sysfs_dir(os.major(st_dev), os.minor(st_dev), sys_root)
    if sysfs is None and mount:
        sysfs = _sysfs_for_source(mount.get("source", ""), sys_root)
    if sysfs is None:
        kind = filesystem.get("type", "unknown")
        return {
            "path": path,
            "filesystem": filesystem,
            "device": None,
            "disks": [],
            "media": "unknown",
            "nvme": None,
            "note": f"no block device behind {path} (filesystem {kind})",
        }
    disks = [describe_disk(disk) for disk in leaf_disks(sysfs, sys_root)]
    media_kinds = {disk["media"] for disk in disks}
    media = media_kinds.pop() if len(media_kinds) == 1 else ("mixed" if media_kinds else "unknown")
    return {
        "path": path,
        "filesystem": filesystem,
        "device": sysfs.name,
        "disks": disks,
        "media": media,
        "nvme": bool(disks) and all(disk["nvme"] for disk in disks),
        "note": "",
    }


def describe_visible(path: str) -> dict[str, Any] | None:
    """``describe_path`` of ``path`` when it is a directory the agent can see, else None (an
    empty path, a directory of another container or host, a disappearing one)."""
    if not path or not os.path.isdir(path):
        return None
    try:
        return describe_path(path)
    except OSError:
        return None


def describe_disk(sysfs: Path) -> dict[str, Any]:
    """One whole disk from its /sys/class/block directory:

    ``{"name", "major_minor", "size_bytes", "rotational": bool|None, "media", "nvme",
    "transport", "model", "virtual": bool, "driver"}``.  ``transport`` is the NVMe controller's
    transport (``pcie`` is locally attached; ``tcp``, ``rdma``, ``fc`` are NVMe over fabrics)."""
    name = sysfs.name
    real = str(sysfs.resolve())
    rotational_text = _read(sysfs / "queue" / "rotational")
    rotational = None if rotational_text is None else rotational_text == "1"
    driver = _driver(sysfs / "device")
    nvme = name.startswith("nvme") or "/nvme/" in real
    transport = _nvme_transport(sysfs) if nvme else None
    virtual = (
        name.startswith(("vd", "xvd"))
        or driver in ("virtio_blk", "virtio_scsi", "xen_blkfront", "vbd")
        or "/virtio" in real
        or "/devices/virtual/" in real
    )
    model = _read(sysfs / "device" / "model") or _read(sysfs / "device" / "name")
    if model is None and driver == "virtio_blk":
        model = "virtio-blk"
    if nvme:
        media = "nvme"
    elif virtual:
        media = "virtual"
    elif rotational is None:
        media = "unknown"
    else:
        media = "hdd" if rotational else "ssd"
    size = _read(sysfs / "size")
    return {
        "name": name,
        "major_minor": _read(sysfs / "dev"),
        "size_bytes": int(size) * SECTOR if size and size.isdigit() else None,
        "rotational": rotational,
        "media": media,
        "nvme": nvme,
        "transport": transport,
        "model": model,
        "virtual": virtual,
        "driver": driver,
    }


def mount_of(path: str, *, sys_root: Path = Path("/")) -> dict[str, str] | None:
    """The mount holding ``path`` from mountinfo: ``{"mount_point", "type", "source",
    "major_minor"}`` (the longest mount point that is a prefix of ``path``; the last one
    mounted wins on ties, as the kernel does)."""
    text = _read(sys_root / MOUNTINFO.relative_to("/"), strip=False)
    if text is None:
        return None
    best: dict[str, str] | None = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 3:
            continue
        mount_point = _unescape(fields[4])
        if not _is_under(path, mount_point):
            continue
        if best is None or len(mount_point) >= len(best["mount_point"]):
            best = {
                "mount_point": mount_point,
                "type": fields[dash + 1],
                "source": _unescape(fields[dash + 2]),
                "major_minor": fields[2],
            }
    return best


def same_disks(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """Whether two ``describe_path`` answers sit on the same disks (None: cannot be told)."""
    names_a = {disk["name"] for disk in a.get("disks") or []}
    names_b = {disk["name"] for disk in b.get("disks") or []}
    if not names_a or not names_b:
        return None
    return names_a == names_b


def _sysfs_dir(major: int, minor: int, sys_root: Path) -> Path | None:
    if major == 0:  # anonymous device: tmpfs, overlay, btrfs subvolume, nfs
        return None
    link = sys_root / SYS_DEV_BLOCK.relative_to("/") / f"{major}:{minor}"
    if not link.exists():
        return None
    return _class_dir(link.resolve().name, sys_root) or link.resolve()


def _sysfs_for_source(source: str, sys_root: Path) -> Path | None:
    """The block device a mount source names (``/dev/vda1``, ``/dev/mapper/vg-etcd``)."""
    if not source.startswith("/dev/"):
        return None
    try:
        rdev = os.stat(source).st_rdev
        found = _sysfs_dir(os.major(rdev), os.minor(rdev), sys_root)
        if found is not None:
            return found
    except OSError:
        pass  # a container may not have the device node: go by name
    return _class_dir(os.path.basename(source), sys_root)


def _class_dir(name: str, sys_root: Path) -> Path | None:
    candidate = sys_root / SYS_CLASS_BLOCK.relative_to("/") / name
    return candidate if candidate.exists() else None


def leaf_disks(sysfs: Path, sys_root: Path, depth: int = 0) -> list[Path]:
    """Whole disks under a block device: partition -> parent, dm/md -> slaves, recursively."""
    if depth > MAX_DEPTH:
        return []
    real = sysfs.resolve()
    if (real / "partition").exists():
        parent = real.parent
        return leaf_disks(_class_dir(parent.name, sys_root) or parent, sys_root, depth + 1)
    slaves_dir = real / "slaves"
    slaves = sorted(slaves_dir.iterdir()) if slaves_dir.is_dir() else []
    if not slaves:
        return [sysfs]
    disks: list[Path] = []
    for slave in slaves:
        for disk in leaf_disks(_class_dir(slave.name, sys_root) or slave.resolve(), sys_root, depth + 1):
            if disk.name not in {d.name for d in disks}:
                disks.append(disk)
    return disks


def _driver(device_dir: Path) -> str | None:
    driver = device_dir / "driver"
    try:
        return os.path.basename(os.readlink(driver)) if driver.is_symlink() else None
    except OSError:
        return None


def _nvme_transport(sysfs: Path) -> str | None:
    """The controller's transport: /sys/class/block/nvme0n1/device is the controller (nvme0)."""
    return _read(sysfs / "device" / "transport")


def _read(path: Path, *, strip: bool = True) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.strip() if strip else text


def _is_under(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
