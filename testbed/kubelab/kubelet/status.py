"""A pod's status as the lab kubelet reports it, from what it knows of each container.  Pure.

Phase (the kubelet's rules, restricted to what the lab does): Pending until the init containers
are done and a container has started; Succeeded/Failed once every container has terminated
for good (restartPolicy Never, or OnFailure with every exit 0); Running otherwise (a container
waiting in CrashLoopBackOff has started before).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

State = Literal["waiting", "running", "terminated"]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ContainerRecord:
    """What the kubelet knows of one container of a pod (replaced, never changed, on news)."""

    name: str
    image: str
    image_id: str = ""
    container_id: str = ""
    state: State = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    last_terminated: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)
    ready: bool = False

    def with_changes(self, **changes: Any) -> ContainerRecord:
        return replace(self, **changes)

    def terminated(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exitCode": self.exit_code if self.exit_code is not None else 137,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.signal:
            out["signal"] = self.signal
        if self.message:
            out["message"] = self.message
        return out

    def to_status(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated()}
        else:
            state = {"waiting": {"reason": self.reason, **({"message": self.message} if self.message else {})}}
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.state == "running",
            "state": state,
            "lastState": {"terminated": dict(self.last_terminated)} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def succeeded(self) -> bool:
        return self.state == "terminated" and self.exit_code == 0

    @property
    def has_run(self) -> bool:
        return self.started_at is not None or self.restart_count > 0


def phase(init: Sequence[ContainerRecord], main: Sequence[ContainerRecord], policy: str, init_done: bool) -> str:
    if not init_done:
        failed = any(r.state == "terminated" and not r.succeeded for r in init)
        return "Failed" if failed and policy == "Never" else "Pending"
    final = all(r.state == "terminated" for r in main) and main
    if final and (policy == "Never" or (policy == "OnFailure" and all(r.succeeded for r in main))):
        return "Succeeded" if all(r.succeeded for r in main) else "Failed"
    if any(r.state == "running" or r.has_run for r in main):
        return "Running"
    return "Pending"


def pod_status(
    *,
    init: Sequence[ContainerRecord],
    main: Sequence[ContainerRecord],
    policy: str,
    init_done: bool,
    host_ip: str,
    start_time: str,
    previous: Mapping[str, Any],
) -> dict[str, Any]:
    """The pod's whole ``status`` (what a merge patch of pods/status replaces); ``previous`` is
    the status last reported, so that a condition keeps its lastTransitionTime while it holds."""
    pod_phase = phase(init, main, policy, init_done)
    unready = [r.name for r in main if not r.ready]
    done = pod_phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if done else "ContainersNotReady"
    ready = not unready and not done
    wanted = {
        "PodReadyToStartContainers": (True, "", ""),
        "Initialized": (init_done, "ContainersNotInitialized", "containers with incomplete status"),
        "ContainersReady": (ready, ready_reason, f"containers with unready status: [{' '.join(unready)}]"),
        "Ready": (ready, ready_reason, f"containers with unready status: [{' '.join(unready)}]"),
        "PodScheduled": (True, "", ""),
    }
    before = {c.get("type"): c for c in previous.get("conditions") or ()}
    conditions = []
    for kind, (holds, reason, message) in wanted.items():
        status = "True" if holds else "False"
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else now()
        condition: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        if not holds:
            condition.update(reason=reason, message=message)
        conditions.append(condition)
    status_out: dict[str, Any] = {
        "phase": pod_phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [r.to_status() for r in main],
    }
    if init:
        status_out["initContainerStatuses"] = [r.to_status() for r in init]
    return status_out


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two statuses say the same (transition times aside)."""

    def strip(status: Mapping[str, Any]) -> Any:
        return {
            **status,
            "conditions": [
                {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or ()
            ],
        }

    return bool(strip(a) == strip(b))
