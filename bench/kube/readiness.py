"""Why an agent pod is (not) ready, and why a DaemonSet got no pods: pure reading of API objects.

The reasons name what a user acts on: the image for a pull failure, the agent's last log line for
a crash loop (the container's termination message, ``terminationMessagePolicy:
FallbackToLogsOnError``: no log access needed), the scheduler's message for an unschedulable pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from talbench.bench.cluster_facts import NodeFacts
from talbench.bench.errors import CouldNotRun
from talbench.bench.kube import manifests as m
from talbench.bench.kube.image import build_hint

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
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class PodState:
    ready: bool
    stuck: bool  # will not become ready by waiting
    reason: str  # one line: why not ready ("" when ready)


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _last_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _image(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """The image a container status is about: the spec's (what was asked for), else the status's."""
    for spec in (pod.get("spec") or {}).get("containers") or ():
        if spec.get("name") == container.get("name") and spec.get("image"):
            return str(spec["image"])
    return str(container.get("image") or "?")


def pod_node(pod: Mapping[str, Any]) -> str | None:
    """The node a pod is for: ``spec.nodeName`` once bound; before that (a DaemonSet pod the
    scheduler has not placed) the node its required node affinity names by ``metadata.name``."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            values: list[Any] = list(field.get("values") or ())
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return None


def is_image_pull_failure(reason: str) -> bool:
    """Whether a reason from ``pod_state`` is an image that cannot be pulled."""
    return any(f": {pull} " in reason for pull in IMAGE_PULL_REASONS)


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
            message = _first_line(waiting.get("message"))
            if reason in IMAGE_PULL_REASONS:
                text = f"agent pod {name}: {reason} for image {_image(pod, container)}"
            else:
                text = f"agent pod {name}: {reason}"
            text += f": {message}" if message else ""
            if last.get("exitCode") is not None:
                text += f" (last exit code {last['exitCode']}{', ' + last['reason'] if last.get('reason') else ''})"
                logged = _last_line(last.get("message"))
                if logged:
                    text += f"; last log line: {logged}"
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
        # not stuck: preemption or a node's resources freeing up can still place it
        why = _first_line(scheduled.get("message"))
        return PodState(
            False,
            False,
            f"agent pod {name}: {scheduled.get('reason') or 'not scheduled'}" + (f": {why}" if why else ""),
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


READY_BASE_NODES = 100  # up to this many agents, --ready-timeout as given ...
READY_PER_NODE = 0.1  # ... and this many seconds more per agent beyond: the DaemonSet controller
# creates pods at its API rate (20/s by default), so a large fleet's agents become Ready over
# minutes, not seconds (docs/measurements.md, "Scale")


def ready_timeout(base: float, agents: int) -> float:
    """How long the run waits for ``agents`` agent pods to be Ready."""
    return base + READY_PER_NODE * max(0, agents - READY_BASE_NODES)


def no_agent_ready(nodes: Sequence[NodeFacts], unready: Mapping[str, str], spec: m.AgentSpec) -> CouldNotRun:
    """The error of a run no agent came up for (exit 3, "could not run", never a failed check):
    one line per eligible node with its cause (image pull, crash loop, scheduling, ...)."""
    lines = [f"  {node.name}: {unready.get(node.name, 'no agent')}" for node in nodes]
    hint = None
    if any(is_image_pull_failure(reason) for reason in unready.values()):
        secrets_given = ", ".join(spec.image_pull_secrets)
        hint = (
            f"can the nodes pull {spec.image}?  Check that it was pushed and that the nodes reach the registry; "
            + (
                f"the pull secrets given ({secrets_given}) must exist in namespace {spec.namespace}"
                if secrets_given
                else "a private registry needs --image-pull-secret NAME (with --namespace)"
            )
            + ".  To publish an image: "
            + build_hint(m.tool_version())
        )
    return CouldNotRun(
        f"no agent became ready on any of the {len(nodes)} eligible node(s), nothing was measured:\n"
        + "\n".join(lines),
        hint=hint,
    )


def no_pod_reason(node: NodeFacts) -> str | None:
    """Why no agent pod can come to ``node`` at all (reported at once, not waited for), or None."""
    if not node.ready:
        return "node is NotReady: no agent can start there"
    blocking = untolerated_taints(node.taints, [m.CONTROL_PLANE_TAINT])
    if blocking:
        return f"taint {', '.join(blocking)} keeps the agent DaemonSet off this node"
    return None
