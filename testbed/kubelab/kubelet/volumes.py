"""A pod's volumes on the host, for the lab kubelet: written under the pod's directory (removed
with the pod, and with the lab), then bind-mounted into its containers by runc.

    emptyDir            a directory of the pod (mode 0777, as the kubelet makes it); medium Memory:
                        a tmpfs of its sizeLimit in each container that mounts it
    secret, configMap   the keys (or ``items``) as files with ``defaultMode``/``mode``, read-only
    projected           serviceAccountToken (a TokenRequest bound to the pod), configMap, secret and
                        downwardAPI sources, in one read-only directory
    downwardAPI         ``items`` with fieldRef, as files
    hostPath            a path of the *lab node's* own tree (``<kubelet>/nodes/<node>/root/<path>``),
                        not the machine's: the lab's nodes share one host, and a pod must not
                        reach into it; type DirectoryOrCreate/FileOrCreate/"" create it
fsGroup: every file of a secret, configMap, projected or downwardAPI volume gets it as group
and the group's read bit.  Anything else is a SpecError (CreateContainerConfigError).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.kubelab.kubelet.spec import Lookup, Mount, SpecError, field_value, quantity

DEFAULT_MODE = 0o644


def requests(pod: Mapping[str, Any]) -> tuple[set[tuple[str, str]], list[Mapping[str, Any]]]:
    """What the pod's volumes and env need from the API: (kind, name) of secrets and config maps,
    and the projected serviceAccountToken sources."""
    refs: set[tuple[str, str]] = set()
    tokens: list[Mapping[str, Any]] = []
    spec = pod.get("spec") or {}
    for volume in spec.get("volumes") or ():
        for kind, source in _sources(volume):
            if kind in ("secret", "configmap"):
                refs.add((kind, str(source.get("secretName") or source.get("name") or "")))
            elif kind == "token":
                tokens.append(source)
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        for source in container.get("envFrom") or ():
            if "configMapRef" in source:
                refs.add(("configmap", str(source["configMapRef"].get("name", ""))))
            elif "secretRef" in source:
                refs.add(("secret", str(source["secretRef"].get("name", ""))))
        for item in container.get("env") or ():
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                refs.add(("secret", str(value_from["secretKeyRef"].get("name", ""))))
            if "configMapKeyRef" in value_from:
                refs.add(("configmap", str(value_from["configMapKeyRef"].get("name", ""))))
    return refs, tokens


def _sources(volume: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    if "secret" in volume:
        return [("secret", volume["secret"])]
    if "configMap" in volume:
        return [("configmap", volume["configMap"])]
    if "projected" in volume:
        out: list[tuple[str, Mapping[str, Any]]] = []
        for source in volume["projected"].get("sources") or ():
            if "secret" in source:
                out.append(("secret", source["secret"]))
            elif "configMap" in source:
                out.append(("configmap", source["configMap"]))
            elif "serviceAccountToken" in source:
                out.append(("token", source["serviceAccountToken"]))
            elif "downwardAPI" in source:
                out.append(("downward", source["downwardAPI"]))
        return out
    if "downwardAPI" in volume:
        return [("downward", volume["downwardAPI"])]
    return []


def materialize(
    pod: Mapping[str, Any],
    pod_dir: Path,
    node_root: Path,
    lookup: Lookup,
    tokens: Mapping[str, str],
    host_ip: str,
) -> dict[str, Mount]:
    """Write the pod's volumes; volume name -> where it is (a Mount at path "")."""
    spec = pod.get("spec") or {}
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    out: dict[str, Mount] = {}
    for volume in spec.get("volumes") or ():
        name = str(volume["name"])
        target = pod_dir / "volumes" / name
        if "emptyDir" in volume:
            empty = volume["emptyDir"] or {}
            if empty.get("medium") == "Memory":
                limit = empty.get("sizeLimit")
                out[name] = Mount("", "memory", "", size_limit=int(quantity(limit)) if limit else None)
                continue
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            out[name] = Mount("", "disk", str(target))
        elif "hostPath" in volume:
            out[name] = Mount("", "disk", str(_host_path(node_root, volume["hostPath"])))
        elif sources := _sources(volume):
            target.mkdir(parents=True, exist_ok=True)
            default = int(
                (volume.get("projected") or volume.get("secret") or volume.get("configMap") or {}).get(
                    "defaultMode", DEFAULT_MODE
                )
            )
            for kind, source in sources:
                files = _files(kind, source, pod, lookup, tokens, host_ip)
                for relative, (data, mode) in files.items():
                    _write(target, relative, data, default if mode is None else mode, fs_group)
            out[name] = Mount("", "secret", str(target), read_only=True)
        else:
            raise SpecError(f"volume {name!r}: a kind the lab kubelet does not provide")
    return out


def _host_path(node_root: Path, source: Mapping[str, Any]) -> Path:
    path = node_root / str(source["path"]).lstrip("/")
    kind = source.get("type") or ""
    if kind in ("", "DirectoryOrCreate"):
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif not path.exists():
        raise SpecError(f"hostPath {source['path']} ({kind}) does not exist on the lab node")
    return path


def _files(
    kind: str,
    source: Mapping[str, Any],
    pod: Mapping[str, Any],
    lookup: Lookup,
    tokens: Mapping[str, str],
    host_ip: str,
) -> dict[str, tuple[bytes, int | None]]:
    """relative path -> (content, mode or None for the volume's default)."""
    if kind == "token":
        return {str(source["path"]): (tokens[str(source.get("audience") or "")].encode(), None)}
    if kind == "downward":
        return {
            str(item["path"]): (
                field_value(str(item["fieldRef"]["fieldPath"]), pod, host_ip, host_ip).encode(),
                item.get("mode"),
            )
            for item in source.get("items") or ()
            if "fieldRef" in item
        }
    name = str(source.get("secretName") or source.get("name") or "")
    data = lookup(kind, name)
    if data is None:
        if source.get("optional"):
            return {}
        raise SpecError(f"{kind} {name!r} not found")
    items = source.get("items")
    if not items:
        return {key: (_bytes(kind, value), None) for key, value in data.items()}
    out: dict[str, tuple[bytes, int | None]] = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            if source.get("optional"):
                continue
            raise SpecError(f"{kind} {name!r} has no key {key!r}")
        out[str(item["path"])] = (_bytes(kind, data[key]), item.get("mode"))
    return out


def _bytes(kind: str, value: str) -> bytes:
    """Secret data comes base64-encoded from the API (the lookup keeps it so); config maps do not."""
    return base64.b64decode(value) if kind == "secret" else value.encode()


def _write(directory: Path, relative: str, data: bytes, mode: int, fs_group: int | None) -> None:
    path = (directory / relative).resolve()
    if directory.resolve() not in path.parents:
        raise SpecError(f"volume file {relative!r} leaves its volume")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if fs_group is not None:
        os.chown(path, 0, int(fs_group))
        mode |= 0o040
    path.chmod(mode)


def container_mounts(container: Mapping[str, Any], volumes: Mapping[str, Mount]) -> list[Mount]:
    mounts: list[Mount] = []
    for item in container.get("volumeMounts") or ():
        volume = volumes.get(str(item["name"]))
        if volume is None:
            raise SpecError(f"volumeMount {item['name']!r}: no such volume")
        source = volume.source
        sub = str(item.get("subPath") or "")
        if sub and volume.kind != "memory":
            sub_path = Path(source) / sub
            if volume.kind == "disk" and not sub_path.exists():
                sub_path.mkdir(parents=True)
            source = str(sub_path)
        mounts.append(
            Mount(
                str(item["mountPath"]),
                volume.kind,
                source,
                read_only=bool(item.get("readOnly")) or volume.read_only,
                size_limit=volume.size_limit,
            )
        )
    return mounts
