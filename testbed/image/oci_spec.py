"""The OCI runtime config (``config.json``) of one lab node's agent container: the DaemonSet's pod
(bench/kube/manifests.py ``agent_daemonset``, read into a ``PodContext`` by bench/dispatch/lab.py)
applied to one node of the lab.  Pure: builds a dict, touches nothing.

What the pod asks for and how the lab gives it:
    hostNetwork                    the node's network namespace, joined by path (/run/netns/NAME)
    capabilities.add (the probes') bounding = effective = permitted = exactly those; inheritable
                                   and ambient empty, as containerd gives a pod (the image's
                                   user is uid 0: what the agent starts keeps the bounding set)
    no runAsUser                   the image config's User (numeric)
    allowPrivilegeEscalation false noNewPrivileges
    readOnlyRootFilesystem         root.readonly (the image's rootfs, shared by every node)
    volumes                        secret: the lab's token file, bind-mounted read-only;
                                   emptyDir: the node's data directory (the scratch one) or a
                                   per-node directory, bind-mounted read-write; medium Memory:
                                   tmpfs of its sizeLimit
    resources.limits               memory limit; CPU quota and period when the pod sets a CPU
                                   limit; cpu.shares from the CPU request (as the kubelet sets)
    seccompProfile RuntimeDefault  ``runtime_default_seccomp``: what containerd's default profile
                                   refuses a container without CAP_SYS_ADMIN (an approximation:
                                   a deny list, not containerd's allow list)
    the container itself           its own PID (the agent is PID 1), mount, IPC and UTS
                                   namespaces, the default masked and read-only /proc paths; no
                                   rlimits of its own (inherited from the runtime, as CRI does)

One thing the pod does not ask for: ``/dev/net/tun`` (``LAB_DEVICES``).  Talos has WireGuard in
its kernel; a lab host without it runs the tunnel probe's fallback, wireguard-go, which opens a
TUN device.  NET_ADMIN is still needed and still the only capability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

VolumeKind = Literal["secret", "disk", "memory"]
CFS_PERIOD_US = 100_000
SOCKET_DIR = "/run/talbench-lab"  # where the coordinator's unix socket lives in the container


@dataclass(frozen=True)
class Device:
    path: str
    major: int
    minor: int


LAB_DEVICES = (Device("/dev/net/tun", 10, 200),)


@dataclass(frozen=True)
class Volume:
    """One of the pod's volume mounts."""

    name: str
    path: str  # where the container sees it
    kind: VolumeKind
    read_only: bool = False
    size_limit: int | None = None  # bytes: the tmpfs size of a memory volume (a disk one is not capped)
    item: str | None = None  # secret: the one file it holds (path relative to ``path``)


@dataclass(frozen=True)
class PodContext:
    """What the DaemonSet's pod asks of its runtime, as the lab reproduces it."""

    capabilities: tuple[str, ...]  # without the CAP_ prefix, as Kubernetes writes them
    read_only_root: bool
    no_new_privileges: bool
    memory_limit: int | None  # bytes
    cpu_limit_millis: int | None
    cpu_request_millis: int | None
    grace_seconds: float  # terminationGracePeriodSeconds: SIGTERM, then SIGKILL after this
    volumes: tuple[Volume, ...]
    data_dir: str  # the agent's --data-dir in the pod (the scratch volume's path)
    token_file: str  # the agent's --token-file in the pod (in the secret volume)
    seccomp_runtime_default: bool


@dataclass(frozen=True)
class NodeContainer:
    """One node's container: where its parts are on the host, and what it runs."""

    container_id: str
    hostname: str
    netns_path: str
    cgroups_path: str
    rootfs: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: tuple[int, int]  # uid, gid
    volume_sources: Mapping[str, str]  # volume name -> host path (secret: the file; disk: a directory)
    socket_dir: str  # host directory mounted at SOCKET_DIR
    arch: str  # GOARCH of the host: amd64, arm64


def runtime_config(pod: PodContext, node: NodeContainer) -> dict[str, Any]:
    caps = [f"CAP_{cap.upper()}" for cap in pod.capabilities]
    return {
        "ociVersion": "1.0.2",
        "hostname": node.hostname,
        "root": {"path": node.rootfs, "readonly": pod.read_only_root},
        "process": {
            "terminal": False,
            "user": {"uid": node.user[0], "gid": node.user[1]},
            "args": list(node.args),
            "env": list(node.env),
            "cwd": node.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            "noNewPrivileges": pod.no_new_privileges,
        },
        "mounts": _system_mounts() + _volume_mounts(pod, node),
        "annotations": {"io.talbench.container": node.container_id},
        "linux": {
            "namespaces": [
                {"type": "network", "path": node.netns_path},
                {"type": "pid"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
            ],
            "cgroupsPath": node.cgroups_path,
            "resources": _resources(pod),
            "devices": [
                {"path": d.path, "type": "c", "major": d.major, "minor": d.minor, "fileMode": 0o666, "uid": 0, "gid": 0}
                for d in LAB_DEVICES
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            **({"seccomp": runtime_default_seccomp(node.arch)} if pod.seccomp_runtime_default else {}),
        },
    }


def _system_mounts() -> list[dict[str, Any]]:
    def mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": destination, "type": kind, "source": source, "options": list(options)}

    return [
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
    ]


def _volume_mounts(pod: PodContext, node: NodeContainer) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for volume in pod.volumes:
        if volume.kind == "memory":
            size = [f"size={volume.size_limit}"] if volume.size_limit else []
            options = ["nosuid", "nodev", "mode=755", *size]
            mounts.append({"destination": volume.path, "type": "tmpfs", "source": "tmpfs", "options": options})
            continue
        source = node.volume_sources[volume.name]
        destination = f"{volume.path.rstrip('/')}/{volume.item}" if volume.item else volume.path
        access = "ro" if volume.read_only or volume.kind == "secret" else "rw"
        mounts.append(_bind(source, destination, access))
    mounts.append(_bind(node.socket_dir, SOCKET_DIR, "rw"))
    return mounts


def _bind(source: str, destination: str, access: str) -> dict[str, Any]:
    options = ["rbind", "rprivate", "nosuid", "nodev", access]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def _resources(pod: PodContext) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if pod.cpu_request_millis:
        cpu["shares"] = max(2, pod.cpu_request_millis * 1024 // 1000)  # the kubelet's formula
    if pod.cpu_limit_millis:
        cpu["quota"] = max(1000, pod.cpu_limit_millis * CFS_PERIOD_US // 1000)
        cpu["period"] = CFS_PERIOD_US
    allowed = [{"allow": True, "type": "c", "major": d.major, "minor": d.minor, "access": "rwm"} for d in LAB_DEVICES]
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}, *allowed]}
    if pod.memory_limit:
        resources["memory"] = {"limit": pod.memory_limit}
    if cpu:
        resources["cpu"] = cpu
    return resources


MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# -- RuntimeDefault ------------------------------------------------------------------------------

# What containerd's default profile does not let a container without CAP_SYS_ADMIN, SYS_PTRACE,
# SYS_MODULE, SYS_BOOT, SYS_TIME, SYS_NICE, SYS_PACCT, SYS_RAWIO and SYS_RESOURCE call.
DENIED_SYSCALLS = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy",
    "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
    "perf_event_open", "pivot_root", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key",
    "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "umount",
    "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
)  # fmt: skip
# clone() may not create namespaces (one rule per flag: seccomp compares, it cannot test "any bit")
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
ENOSYS = 38  # clone3: its flags are out of seccomp's reach; libcs fall back to clone on ENOSYS
SECCOMP_ARCHITECTURES = {
    "amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def runtime_default_seccomp(arch: str) -> dict[str, Any]:
    clone_rules = [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }
        for flag in CLONE_NAMESPACE_FLAGS
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": SECCOMP_ARCHITECTURES.get(arch, []),
        "syscalls": [
            {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            *clone_rules,
        ],
    }
