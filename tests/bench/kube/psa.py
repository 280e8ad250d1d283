"""A subset of Kubernetes Pod Security Standards checks (baseline and restricted), for the API
emulator's admission and for checking the CronJob's pod.  Each returns the violations found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]


def baseline_violations(spec: Mapping[str, Any]) -> list[str]:
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"host namespaces ({key}=true)")
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            found.append(f"hostPath volume {volume.get('name')!r}")
    for container in _containers(spec):
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            found.append(f"privileged (container {container['name']!r})")
        added = set((ctx.get("capabilities") or {}).get("add") or ()) - BASELINE_CAPABILITIES
        if added:
            found.append(
                f"non-default capabilities (container {container['name']!r} must not include {', '.join(sorted(added))})"
            )
        for port in container.get("ports") or ():
            if port.get("hostPort"):
                found.append(f"hostPort (container {container['name']!r} uses hostPort {port['hostPort']})")
    return found


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    found = baseline_violations(spec)
    pod_ctx = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"restricted volume types ({volume.get('name')!r}: {', '.join(sorted(kinds))})")
    for container in _containers(spec):
        ctx = container.get("securityContext") or {}
        name = container["name"]
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"allowPrivilegeEscalation != false (container {name!r})")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            found.append(f"unrestricted capabilities (container {name!r} must drop ALL)")
        if set(caps.get("add") or ()) - {"NET_BIND_SERVICE"}:
            found.append(f"unrestricted capabilities (container {name!r} adds {caps['add']})")
        if not (ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))):
            found.append(f"runAsNonRoot != true (container {name!r})")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"runAsUser=0 (container {name!r})")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"seccompProfile (container {name!r} must set RuntimeDefault or Localhost)")
    return found


def violations(level: str, spec: Mapping[str, Any]) -> list[str]:
    if level == "privileged":
        return []
    if level == "baseline":
        return baseline_violations(spec)
    return restricted_violations(spec)
