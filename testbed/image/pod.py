"""The agent DaemonSet's pod as the lab's containers reproduce it: ``pod_context`` reads it back
from the manifest talbench deploys (talbench.bench.kube.manifests), so the test bed never copies
a value of it.

    pod_context()         -> PodContext
    image_launcher(path)  -> ImageLauncher   (the image unpacked, once per digest)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talbench.bench.kube import manifests
from testbed.image.oci_image import prepare_image
from testbed.image.oci_spec import PodContext, Volume, VolumeKind
from testbed.image.runner import ImageLauncher, ImageRequest


def image_launcher(archive: Path) -> ImageLauncher:
    """The launcher for ``archive`` with the DaemonSet's pod context (the image unpacked first)."""
    request = image_request(archive)
    return ImageLauncher(prepare_image(request.archive), request.pod)


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str | int | None) -> float | None:
    """A Kubernetes quantity (``1Gi``, ``250m``, ``2``) as a number; None when absent."""
    if text is None:
        return None
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match.group(1)) * _FACTORS.get(match.group(2) or "", 1.0)


def image_request(archive: Path) -> ImageRequest:
    return ImageRequest(Path(archive), pod_context())


def pod_context() -> PodContext:
    """The agent DaemonSet's pod (bench/kube/manifests.py), read back from the manifest itself:
    its security context, limits, grace period, volumes and the agent's paths.

    Capabilities: the lab grants ``capabilities.add`` and nothing else.  A pod keeps its runtime's
    default set besides (containerd's: CHOWN, DAC_OVERRIDE, SETUID, NET_RAW, ...) unless its
    container also says ``drop: [ALL]``, which is what makes the two the same."""
    spec = manifests.AgentSpec(run_id="lab", namespace="lab", image="lab", token="lab")
    pod = manifests.agent_daemonset(spec)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container.get("securityContext") or {}
    resources = container.get("resources") or {}
    args = list(container.get("args") or ())
    volumes = {v["name"]: v for v in pod.get("volumes") or ()}
    cpu_limit = quantity((resources.get("limits") or {}).get("cpu"))
    cpu_request = quantity((resources.get("requests") or {}).get("cpu"))
    memory_limit = quantity((resources.get("limits") or {}).get("memory"))
    return PodContext(
        capabilities=tuple((security.get("capabilities") or {}).get("add") or ()),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        memory_limit=int(memory_limit) if memory_limit else None,
        cpu_limit_millis=round(cpu_limit * 1000) if cpu_limit else None,
        cpu_request_millis=round(cpu_request * 1000) if cpu_request else None,
        grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)),
        volumes=tuple(_volume(mount, volumes[mount["name"]]) for mount in container.get("volumeMounts") or ()),
        data_dir=args[args.index("--data-dir") + 1],
        token_file=args[args.index("--token-file") + 1],
        seccomp_runtime_default=(
            ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "RuntimeDefault"
        ),
    )


def _volume(mount: Mapping[str, Any], volume: Mapping[str, Any]) -> Volume:
    kind: VolumeKind
    item = None
    size = None
    if "secret" in volume:
        kind = "secret"
        items: list[Mapping[str, Any]] = list(volume["secret"].get("items") or ())
        item = str(items[0]["path"]) if len(items) == 1 else None
    elif "emptyDir" in volume:
        empty = volume["emptyDir"] or {}
        kind = "memory" if empty.get("medium") == "Memory" else "disk"
        limit = quantity(empty.get("sizeLimit"))
        size = int(limit) if limit else None
    else:
        raise ValueError(f"the agent pod's volume {volume.get('name')!r} is of a kind the lab does not reproduce")
    return Volume(str(mount["name"]), str(mount["mountPath"]), kind, bool(mount.get("readOnly")), size, item)
