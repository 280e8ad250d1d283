"""A pod's container as the lab kubelet runs it: argv, environment, user, capabilities and
resources from the pod spec, as an OCI runtime config (testbed/image/oci_spec.py builds it).  Pure.

How the pod spec maps (what talbench's DaemonSet and CronJob use, and a little more):
    command / args            command replaces the image's Entrypoint, args its Cmd; $(VAR) expanded
    env, envFrom              value; valueFrom fieldRef (metadata.name/namespace/uid/labels/annotations,
                              spec.nodeName, spec.serviceAccountName, status.hostIP(s), status.podIP(s)),
                              secretKeyRef, configMapKeyRef; envFrom configMapRef/secretRef
    securityContext           runAsUser/runAsGroup (container over pod, else the image's user);
                              capabilities: containerd's default set, minus drop, plus add
                              (privileged: every capability, no seccomp); allowPrivilegeEscalation
                              false: noNewPrivileges; seccompProfile RuntimeDefault
    resources                 limits.memory, limits.cpu (CFS quota), requests.cpu (shares)
    readOnlyRootFilesystem    the rootfs is always read-only: it is the unpacked image, shared by
                              every container of every lab (a pod that writes outside its volumes fails)
    network                   every pod shares its node's network namespace (podIP = hostIP): the
                              lab has no CNI; hostNetwork pods are exactly what they are on Talos
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.image.oci_spec import NodeContainer, PodContext, Volume, VolumeKind

DEFAULT_CAPABILITIES = (
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
)  # fmt: skip
ALL_CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG",
    "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE",
    "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_VAR = re.compile(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)")
Lookup = Callable[[str, str], "Mapping[str, str] | None"]  # (kind "secret"/"configmap", name) -> its data


class SpecError(Exception):
    """The pod asks for something the lab kubelet cannot give (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Mount:
    """One of the container's volume mounts, resolved on the host."""

    path: str  # in the container
    kind: VolumeKind
    source: str  # host path (file or directory); "" for a memory volume
    read_only: bool = False
    size_limit: int | None = None


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: tuple[int, int]


def quantity(text: str | int | float) -> float:
    """A Kubernetes resource quantity ("250m", "3Gi", "1.5", "1e3") as a number of base units."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in ("", *_SUFFIXES):
        raise SpecError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _SUFFIXES.get(match.group(2), 1)


def expand(text: str, env: Mapping[str, str]) -> str:
    """$(VAR) from ``env`` (left as is when undefined), $$ an escaped $ (Kubernetes' rules)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(one, text)


def field_value(path: str, pod: Mapping[str, Any], host_ip: str, pod_ip: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise SpecError(f"unsupported fieldRef {path!r}")


def environment(
    container: Mapping[str, Any], pod: Mapping[str, Any], image: ImageConfig, host_ip: str, lookup: Lookup
) -> dict[str, str]:
    """The container's environment: the image's, then envFrom, then env (each may use the ones
    before it in $(VAR))."""
    env = dict(item.partition("=")[::2] for item in image.env)
    env.setdefault("PATH", DEFAULT_PATH)
    for source in container.get("envFrom") or ():
        kind, ref = (
            ("configmap", source["configMapRef"])
            if "configMapRef" in source
            else ("secret", source.get("secretRef") or {})
        )
        for key, value in (lookup(kind, str(ref.get("name", ""))) or {}).items():
            env[f"{source.get('prefix', '')}{key}"] = _text(kind, value)
    for item in container.get("env") or ():
        name = str(item["name"])
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_value(str(source["fieldRef"]["fieldPath"]), pod, host_ip, host_ip)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
            found = (lookup(kind, str(ref.get("name", ""))) or {}).get(str(ref.get("key", "")))
            if found is None:
                if ref.get("optional"):
                    continue
                raise SpecError(f"{kind} {ref.get('name')!r} has no key {ref.get('key')!r}")
            env[name] = _text(kind, found)
        else:
            env[name] = ""  # resourceFieldRef: not given by the lab kubelet
    return env


def _text(kind: str, value: str) -> str:
    """A secret's value comes base64-encoded from the API (and the lookup keeps it so)."""
    return base64.b64decode(value).decode(errors="replace") if kind == "secret" else value


def argv(container: Mapping[str, Any], image: ImageConfig, env: Mapping[str, str]) -> tuple[str, ...]:
    command = container.get("command")
    args = container.get("args")
    if command:
        out = [*command, *(args or ())]
    else:
        out = [*image.entrypoint, *(args if args is not None else image.cmd)]
    if not out:
        raise SpecError("no command: the container sets none and the image has no Entrypoint/Cmd")
    return tuple(expand(str(part), env) for part in out)


def _security(container: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return dict(container.get("securityContext") or {}), dict((pod.get("spec") or {}).get("securityContext") or {})


def user(container: Mapping[str, Any], pod: Mapping[str, Any], image: ImageConfig) -> tuple[int, int]:
    own, shared = _security(container, pod)
    uid = own.get("runAsUser", shared.get("runAsUser"))
    gid = own.get("runAsGroup", shared.get("runAsGroup"))
    return (
        image.user[0] if uid is None else int(uid),
        (image.user[1] if uid is None else 0) if gid is None else int(gid),
    )


def capabilities(container: Mapping[str, Any]) -> tuple[str, ...]:
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        return ALL_CAPABILITIES
    caps = security.get("capabilities") or {}
    drop = {str(c).upper().removeprefix("CAP_") for c in caps.get("drop") or ()}
    add = [str(c).upper().removeprefix("CAP_") for c in caps.get("add") or ()]
    kept = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    return tuple(dict.fromkeys([*kept, *(ALL_CAPABILITIES if "ALL" in add else add)]))


def pod_context(container: Mapping[str, Any], pod: Mapping[str, Any], mounts: Sequence[Mount]) -> PodContext:
    own, shared = _security(container, pod)
    privileged = bool(own.get("privileged"))
    seccomp = (own.get("seccompProfile") or shared.get("seccompProfile") or {}).get("type")
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    memory = limits.get("memory")
    cpu_limit = limits.get("cpu")
    cpu_request = requests.get("cpu", cpu_limit)
    return PodContext(
        capabilities=capabilities(container),
        read_only_root=True,
        no_new_privileges=own.get("allowPrivilegeEscalation") is False,
        memory_limit=int(quantity(memory)) if memory is not None else None,
        cpu_limit_millis=round(quantity(cpu_limit) * 1000) if cpu_limit is not None else None,
        cpu_request_millis=round(quantity(cpu_request) * 1000) if cpu_request is not None else None,
        grace_seconds=float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)),
        volumes=tuple(
            Volume(f"m{i}", m.path, m.kind, read_only=m.read_only, size_limit=m.size_limit)
            for i, m in enumerate(mounts)
        ),
        data_dir="",
        token_file="",
        seccomp_runtime_default=seccomp == "RuntimeDefault" and not privileged,
    )


def node_container(
    *,
    container_id: str,
    hostname: str,
    netns_path: str,
    cgroups_path: str,
    image: ImageConfig,
    rootfs: str,
    args: Sequence[str],
    env: Mapping[str, str],
    user_ids: tuple[int, int],
    mounts: Sequence[Mount],
    socket_dir: str,
    arch: str,
    working_dir: str | None,
) -> NodeContainer:
    return NodeContainer(
        container_id=container_id,
        hostname=hostname,
        netns_path=netns_path,
        cgroups_path=cgroups_path,
        rootfs=rootfs,
        args=tuple(args),
        env=tuple(f"{key}={value}" for key, value in env.items()),
        cwd=working_dir or image.cwd,
        user=user_ids,
        volume_sources={f"m{i}": m.source for i, m in enumerate(mounts) if m.kind != "memory"},
        socket_dir=socket_dir,
        arch=arch,
    )
