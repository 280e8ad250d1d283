"""Resolving a directory to its disk.

Real paths of this machine first (its root disk, a tmpfs, a loop device with ext4 as root); the
layouts this machine lacks (NVMe, partitions, device-mapper over two disks) are checked on a
copy of sysfs's shape built in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from talbench.agents import devices


def test_a_directory_on_the_root_disk_resolves_to_that_disk(tmp_path: Path) -> None:
    found = devices.describe_path(tmp_path)
    st_dev = os.stat(tmp_path).st_dev
    if os.major(st_dev) == 0:
        pytest.skip("the temporary directory is on a filesystem without a block device")
    assert found["device"] is not None
    assert found["disks"], found
    disk = found["disks"][0]
    assert disk["size_bytes"] and disk["size_bytes"] > 0
    assert disk["major_minor"] and Path(f"/sys/dev/block/{disk['major_minor']}").exists()
    assert (
        found["filesystem"]["size_bytes"] > 0
        and 0 <= found["filesystem"]["free_bytes"] <= found["filesystem"]["size_bytes"]
    )
    if disk["name"].startswith("vd"):
        # virtio disks claim to be rotational; they are reported as virtual
        assert disk["media"] == "virtual" and disk["virtual"] is True and disk["nvme"] is False
        assert found["nvme"] is False


def test_tmpfs_has_no_disk_and_nvme_cannot_be_told() -> None:
    if devices.mount_of("/dev/shm") is None or devices.mount_of("/dev/shm")["type"] != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    found = devices.describe_path("/dev/shm")
    assert found["device"] is None and found["disks"] == []
    assert found["nvme"] is None and found["media"] == "unknown"
    assert "tmpfs" in found["note"]


def test_mount_of_picks_the_longest_mount_point() -> None:
    assert devices.mount_of("/proc/self")["mount_point"] == "/proc"
    assert devices.mount_of("/")["mount_point"] == "/"


def test_describe_visible_only_describes_directories_the_agent_sees(tmp_path: Path) -> None:
    assert devices.describe_visible("") is None
    assert devices.describe_visible(str(tmp_path / "not-here")) is None
    (tmp_path / "a-file").write_text("x")
    assert devices.describe_visible(str(tmp_path / "a-file")) is None
    assert devices.describe_visible(str(tmp_path))["path"] == devices.describe_path(tmp_path)["path"]


def test_same_disks() -> None:
    a = {"disks": [{"name": "nvme0n1"}]}
    b = {"disks": [{"name": "sda"}]}
    assert devices.same_disks(a, a) is True
    assert devices.same_disks(a, b) is False
    assert devices.same_disks(a, {"disks": []}) is None


@contextlib.contextmanager
def loop_ext4(size_mb: int = 32) -> Iterator[tuple[Path, str]]:
    work = Path(tempfile.mkdtemp(prefix="tb-dev-"))
    image, mount_point = work / "disk.img", work / "mnt"
    mount_point.mkdir()
    loop = None
    try:
        with open(image, "wb") as handle:
            handle.truncate(size_mb << 20)
        loop = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", loop], check=True, capture_output=True, timeout=60)
        subprocess.run(["mount", loop, str(mount_point)], check=True, timeout=10)
        try:
            yield mount_point, loop
        finally:
            subprocess.run(["umount", str(mount_point)], check=False, timeout=30)
    finally:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False, timeout=10)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.root("losetup", "mkfs.ext4", "mount", "umount")
def test_a_loop_device_filesystem_resolves_to_the_loop_disk() -> None:
    try:
        context = loop_ext4()
        mount_point, loop = context.__enter__()
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot set up a loop device here: {exc}")
    try:
        found = devices.describe_path(mount_point)
        assert found["device"] == os.path.basename(loop)
        assert found["filesystem"]["type"] == "ext4"
        assert found["filesystem"]["source"] == loop
        disk = found["disks"][0]
        assert disk["size_bytes"] == 32 << 20
        assert disk["media"] == "virtual" and found["nvme"] is False
        assert devices.same_disks(found, devices.describe_path("/")) is False
    finally:
        context.__exit__(None, None, None)


# ---- sysfs layouts this machine does not have -------------------------------------------------


def make_disk(
    root: Path,
    path: str,
    name: str,
    dev: str,
    *,
    rotational: str = "0",
    model: str | None = None,
    size: int = 2048,
    driver: str | None = None,
    transport: str | None = None,
) -> Path:
    """/sys/devices/<path>/<name> with /sys/class/block/<name> and /sys/dev/block/<dev> links."""
    real = root / "sys/devices" / path / name
    (real / "queue").mkdir(parents=True)
    (real / "queue/rotational").write_text(rotational + "\n")
    (real / "size").write_text(f"{size}\n")
    (real / "dev").write_text(dev + "\n")
    (real / "device").mkdir()
    if model:
        (real / "device/model").write_text(model + "   \n")
    if transport:
        (real / "device/transport").write_text(transport + "\n")
    if driver:
        drivers = root / "sys/bus/drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        (real / "device/driver").symlink_to(drivers)
    link(root, name, dev, real)
    return real


def make_partition(root: Path, disk: Path, name: str, dev: str) -> Path:
    real = disk / name
    real.mkdir()
    (real / "partition").write_text("1\n")
    (real / "dev").write_text(dev + "\n")
    link(root, name, dev, real)
    return real


def link(root: Path, name: str, dev: str, real: Path) -> None:
    for folder, entry in (("sys/class/block", name), ("sys/dev/block", dev)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / entry).symlink_to(real)


def test_nvme_partition_resolves_to_its_local_nvme_disk(tmp_path: Path) -> None:
    disk = make_disk(
        tmp_path,
        "pci0000:00/0000:00:04.0/nvme/nvme0",
        "nvme0n1",
        "259:0",
        model="Samsung SSD 980 PRO 1TB",
        transport="pcie",
        size=1953525168,
    )
    part = make_partition(tmp_path, disk, "nvme0n1p6", "259:6")
    disks = devices.leaf_disks(tmp_path / "sys/class/block/nvme0n1p6", tmp_path)
    assert [d.name for d in disks] == ["nvme0n1"]
    described = devices.describe_disk(disks[0])
    assert described["nvme"] is True and described["media"] == "nvme"
    assert described["transport"] == "pcie"
    assert described["model"] == "Samsung SSD 980 PRO 1TB"
    assert described["size_bytes"] == 1953525168 * 512
    assert part.exists()


def test_device_mapper_resolves_to_every_disk_under_it(tmp_path: Path) -> None:
    sda = make_disk(
        tmp_path,
        "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block",
        "sda",
        "8:0",
        rotational="1",
        model="ST4000NM0035",
        driver="sd",
    )
    sdb = make_disk(
        tmp_path,
        "pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/block",
        "sdb",
        "8:16",
        rotational="0",
        model="INTEL SSDSC2KB48",
    )
    sda2 = make_partition(tmp_path, sda, "sda2", "8:2")
    sdb2 = make_partition(tmp_path, sdb, "sdb2", "8:18")
    dm = tmp_path / "sys/devices/virtual/block/dm-0"
    (dm / "slaves").mkdir(parents=True)
    (dm / "slaves/sda2").symlink_to(sda2)
    (dm / "slaves/sdb2").symlink_to(sdb2)
    link(tmp_path, "dm-0", "253:0", dm)
    disks = devices.leaf_disks(tmp_path / "sys/class/block/dm-0", tmp_path)
    assert [d.name for d in disks] == ["sda", "sdb"]
    media = [devices.describe_disk(d)["media"] for d in disks]
    assert media == ["hdd", "ssd"]


def test_nvme_over_fabrics_and_virtio_are_told_apart(tmp_path: Path) -> None:
    tcp = make_disk(tmp_path, "virtual/nvme-fabrics/ctl/nvme1", "nvme1n1", "259:1", transport="tcp")
    vda = make_disk(
        tmp_path, "pci0000:00/0000:00:02.0/virtio1/block", "vda", "254:0", rotational="1", driver="virtio_blk"
    )
    xvda = make_disk(tmp_path, "vbd-768/block", "xvda", "202:0", rotational="1")
    assert devices.describe_disk(tcp)["transport"] == "tcp"
    virtio = devices.describe_disk(vda)
    assert virtio["media"] == "virtual" and virtio["rotational"] is True and virtio["model"] == "virtio-blk"
    assert devices.describe_disk(xvda)["media"] == "virtual"


def test_mountinfo_escapes_and_fallback_by_source(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "30 22 0:45 / /var rw,relatime shared:5 - btrfs /dev/nvme0n1p6 rw,space_cache\n"
        "31 30 0:46 / /var/lib/my\\040data rw - xfs /dev/sdb1 rw\n"
    )
    assert devices.mount_of("/var/lib/etcd", sys_root=tmp_path)["source"] == "/dev/nvme0n1p6"
    assert devices.mount_of("/var/lib/my data/x", sys_root=tmp_path)["mount_point"] == "/var/lib/my data"
    assert devices.mount_of("/etc", sys_root=tmp_path)["type"] == "ext4"
