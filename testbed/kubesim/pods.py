"""What the simulated kubelet (kubelet.py) and scheduler write for a pod: the status of a running
agent, Ready or not, waiting and crash-loop states, and when an agent pod cannot start the words
of the real ones (kube-scheduler, the kubelet with containerd); and the node affinity the
DaemonSet controller gives each of its pods (the emulator's)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

UNSCHEDULABLE = "Unschedulable"
STARTED_PHASES = ("Running", "Succeeded", "Failed")  # a pod past Pending
TERMINATION_TAIL_BYTES = 2048  # the kubelet's FallbackToLogsOnError: the log's last 2 KiB ...
TERMINATION_TAIL_LINES = 80  # ... or last 80 lines, whichever is less


def node_affinity(node: str) -> dict[str, Any]:
    """What the DaemonSet controller pins each of its pods to its node with (the scheduler binds it)."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
            }
        }
    }


def affinity_node(spec: Mapping[str, Any]) -> str | None:
    """The node a pod is for: bound, or pinned by node affinity (not yet scheduled)."""
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


def waiting_message(reason: str, image: str) -> str:
    """The kubelet's message for a waiting container (containerd's words for a pull failure)."""
    if reason == "ErrImagePull":
        return (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found'
        )
    if reason == "ImagePullBackOff":
        return f'Back-off pulling image "{image}"'
    return f"emulated {reason}"


def unschedulable_condition(nodes: int) -> dict[str, str]:
    """kube-scheduler's PodScheduled condition for a DaemonSet pod its node has no room for."""
    others = nodes - 1
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": UNSCHEDULABLE,
        "message": (
            f"0/{nodes} nodes are available: 1 Insufficient memory, {others} node(s) didn't match Pod's node "
            f"affinity/selector. preemption: 0/{nodes} nodes are available: 1 No preemption victims found for "
            f"incoming pod, {others} Preemption is not helpful for scheduling."
        ),
    }


def termination_message(log: Path, exit_code: int, policy: str | None) -> str | None:
    """``lastState.terminated.message``: with FallbackToLogsOnError and a failed exit, the tail of
    the container's log (the agent writes no termination-log file)."""
    if policy != "FallbackToLogsOnError" or exit_code == 0:
        return None
    try:
        data = log.read_bytes()[-TERMINATION_TAIL_BYTES:]
    except OSError:
        return None
    lines = data.decode(errors="replace").splitlines()[-TERMINATION_TAIL_LINES:]
    return "\n".join(lines) or None


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running(pod: Mapping[str, Any], address: str, *, ready: bool = True) -> dict[str, Any]:
    """A pod whose containers all run, Ready (its readiness probe passing) or not, on a node at
    ``address`` (hostNetwork: podIP = hostIP), as the kubelet reports it."""
    meta, spec = pod["metadata"], pod["spec"]
    started = now()
    return {
        "phase": "Running",
        "hostIP": address,
        "hostIPs": [{"ip": address}],
        "podIP": address,
        "podIPs": [{"ip": address}],
        "startTime": started,
        "conditions": [
            {
                "type": kind,
                "status": "True" if ready or kind not in ("ContainersReady", "Ready") else "False",
                "lastTransitionTime": started,
            }
            for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": f"simulated://{c['image']}",
                "containerID": f"simulated://{meta['uid']}-{c['name']}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            for c in spec["containers"]
        ],
    }


def set_ready(status: dict[str, Any], ready: bool) -> None:
    """The pod's Ready condition, the others kept."""
    status["conditions"] = [c for c in status.get("conditions") or () if c["type"] != "Ready"] + [
        {"type": "Ready", "status": "True" if ready else "False"}
    ]


def set_waiting(status: dict[str, Any], reason: str, message: str) -> None:
    """Pending, its one container (``agent``) waiting for ``reason``, not Ready."""
    status.update(
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "agent",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
            ],
        }
    )
    set_ready(status, False)


def set_crash_loop(status: dict[str, Any], exit_code: int, terminated: Mapping[str, str]) -> None:
    """Its one container (``agent``) exited with ``exit_code`` and is waiting to be restarted;
    ``terminated``: more of its last state (the message)."""
    status.update(
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "agent",
                    "ready": False,
                    "restartCount": 1,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off restarting failed container agent",
                        }
                    },
                    "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", **terminated}},
                }
            ],
        }
    )
    set_ready(status, False)
