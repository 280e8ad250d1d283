"""Why an agent pod is (not) ready, and why a DaemonSet got no pods: pure reading of API objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# waiting reasons after which waiting longer does not help
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class PodState:
    ready: bool
    stuck: bool  # will not become ready by waiting
    reason: str  # one line: why not ready ("" when ready)


def pod_state(pod: Mapping[str, Any]) -> PodState:
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if isinstance(c, dict)}
    if (conditions.get("Ready") or {}).get("status") == "True":
        return PodState(True, False, "")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return PodState(False, True, f"agent pod {name} is being deleted")
    for container in status.get("containerStatuses") or ():
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
            message = (waiting.get("message") or "").strip().splitlines()
            text = f"agent pod {name}: {reason}" + (f": {message[0]}" if message else "")
            if last.get("exitCode") is not None:
                text += f" (last exit code {last['exitCode']}{', ' + last['reason'] if last.get('reason') else ''})"
            return PodState(False, reason in STUCK_REASONS, text)
        terminated = state.get("terminated") or {}
        if terminated:
            return PodState(
                False,
                False,
                f"agent pod {name}: exited with code {terminated.get('exitCode')} ({terminated.get('reason', '')})",
            )
        if container.get("started") or state.get("running"):
            return PodState(
                False, False, f"agent pod {name}: running, readiness probe (GET /v1/health) not passing yet"
            )
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        return PodState(
            False,
            False,
            f"agent pod {name} not scheduled: {(scheduled.get('message') or scheduled.get('reason') or '').strip()}",
        )
    return PodState(False, False, f"agent pod {name}: {status.get('phase') or 'Pending'}")


def creation_failure(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The message of the newest FailedCreate event (a DaemonSet that cannot create pods)."""
    failed = [e for e in events if e.get("reason") == "FailedCreate" and e.get("type", "Warning") == "Warning"]
    if not failed:
        return None
    newest = max(failed, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return (str(newest.get("message") or "FailedCreate").strip().splitlines() or ["FailedCreate"])[0]


def is_pod_security_rejection(message: str) -> bool:
    return "violates PodSecurity" in message


def untolerated_taints(taints: Sequence[str], tolerated_keys: Sequence[str]) -> list[str]:
    """Taints (``key[=value]:Effect``) that keep the agent DaemonSet off a node."""
    blocking = []
    for taint in taints:
        key = taint.split(":", 1)[0].split("=", 1)[0]
        effect = taint.rsplit(":", 1)[-1]
        if (
            effect in ("NoSchedule", "NoExecute")
            and key not in tolerated_keys
            and not key.startswith("node.kubernetes.io/")
        ):
            blocking.append(taint)
    return blocking
