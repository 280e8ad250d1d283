"""The run's life on the cluster: read the facts, create the agents, wait for them, remove them.

Every wait is bounded; removal waits until the objects are gone.  ``clean`` removes what runs
left, found by label: only runs past the deadline their objects carry, unless told the run id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from talbench.agents import wire
from talbench.bench.cluster_facts import ClusterFacts, NodeFacts
from talbench.bench.errors import CouldNotRun, NoPermission, UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeApiError, KubeClient, path
from talbench.bench.kube.facts import cluster_facts
from talbench.bench.kube.readiness import (
    creation_failure,
    is_pod_security_rejection,
    pod_node,
    pod_state,
    untolerated_taints,
)
from talbench.bench.model import Role

_PATHS = {
    "Namespace": ("v1", "namespaces", False),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Secret": ("v1", "secrets", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "ConfigMap": ("v1", "configmaps", True),
}

PODS_LISTED_PER_SECOND = 250  # the readiness poll's pace: one list per second per 250 agent pods


def collection_path(doc: Mapping[str, Any]) -> str:
    group_version, plural, namespaced = _PATHS[doc["kind"]]
    return path(group_version, plural, doc["metadata"].get("namespace") if namespaced else None)


def object_path(doc: Mapping[str, Any]) -> str:
    group_version, plural, namespaced = _PATHS[doc["kind"]]
    return path(
        group_version, plural, doc["metadata"].get("namespace") if namespaced else None, doc["metadata"]["name"]
    )


async def read_facts(kube: KubeClient) -> ClusterFacts:
    """Server version, nodes, and the pods on every control plane (by spec.nodeName)."""
    version = await kube.version()
    nodes = await kube.list(path("v1", "nodes"))
    control = [n for n in (cluster_facts(version, nodes, None).nodes) if n.role is Role.CONTROL_PLANE]
    pods: list[dict[str, Any]] = []
    for node in control:
        pods += await kube.list(path("v1", "pods"), field_selector=f"spec.nodeName={node.name}")
    return cluster_facts(version, nodes, pods)


def matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


async def create_agents(kube: KubeClient, spec: m.AgentSpec, created: list[dict[str, Any]] | None = None) -> None:
    """Create the run's objects in order; ``created`` collects each one the API accepted, so
    that removal deletes exactly those (never a same-named object that was there before).  Each
    carries the run's deadline (``m.ANNOTATION_DEADLINE``): until then ``clean`` leaves it alone."""
    deadline = m.deadline_text(time.time() + m.RUN_DEADLINE_S)
    for doc in m.agent_manifests(spec):
        doc = m.with_deadline(doc, deadline)
        try:
            await kube.create(collection_path(doc), doc)
            if created is not None:
                created.append(doc)
        except KubeApiError as exc:
            what = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}".replace(" /", " ")
            if exc.status == 409:
                raise CouldNotRun(
                    f"cannot create {what}: it already exists", hint="'talbench clean' removes what earlier runs left"
                ) from exc
            raise CouldNotRun(f"cannot create {what}: {exc}") from exc


@dataclass(frozen=True)
class Readiness:
    pods: Mapping[str, str]  # node -> ready agent pod name
    unready: Mapping[str, str] = field(default_factory=dict)  # node -> reason
    waited: float = 0.0


async def wait_for_agents(
    kube: KubeClient,
    spec: m.AgentSpec,
    nodes: Sequence[NodeFacts],
    *,
    timeout: float,
    poll_interval: float = 1.0,
) -> Readiness:
    """Wait (at most ``timeout``) until every node's agent pod is Ready.  A DaemonSet that cannot
    create any pod (Pod Security rejection: FailedCreate events only) ends the run at once.
    The run's pods are listed every ``poll_interval``, less often the more there are (a list of
    a thousand pods is slow on a busy control plane), and a list that times out or meets a
    busy API server (429, 5xx) is asked again at the next poll, until ``timeout``."""
    started = time.monotonic()
    interval = max(poll_interval, len(nodes) / PODS_LISTED_PER_SECOND)
    selector = m.label_selector({m.LABEL_RUN_ID: spec.run_id})
    pods_path = path("v1", "pods", spec.namespace)
    events_path = path("v1", "events", spec.namespace)
    tolerated = [m.CONTROL_PLANE_TAINT]
    states: dict[str, tuple[str, Any]] = {}
    failure: str | None = None
    while True:
        try:
            pods = await kube.list(pods_path, label_selector=selector)
        except NoPermission:
            raise
        except (CouldNotRun, KubeApiError) as exc:
            if isinstance(exc, KubeApiError) and exc.status < 500 and exc.status != 429:
                raise
            if time.monotonic() - started >= timeout:
                raise CouldNotRun(f"the run's agent pods could not be listed within {timeout:g}s: {exc}") from exc
            await asyncio.sleep(interval)
            continue
        by_node = {pod_node(p): p for p in pods}  # bound, or still waiting for the scheduler
        states = {}
        for node in nodes:
            pod = by_node.get(node.name)
            states[node.name] = ("pod", pod) if pod is not None else ("none", None)
        ready = {name for name, (kind, pod) in states.items() if kind == "pod" and pod_state(pod).ready}
        if len(ready) == len(nodes):
            break
        failure = None
        if len(by_node) < len(nodes):  # this run's DaemonSet only: a shared namespace keeps old events
            events = await kube.list(events_path, field_selector=f"involvedObject.name={spec.name}")
            failure = creation_failure([e for e in events if (e.get("involvedObject") or {}).get("name") == spec.name])
        if failure and not pods:
            if is_pod_security_rejection(failure):
                raise CouldNotRun(
                    f"the agent DaemonSet in namespace {spec.namespace} was rejected by Pod Security admission: {failure}",
                    hint=_pod_security_hint(spec),
                )
            raise CouldNotRun(f"the agent DaemonSet in namespace {spec.namespace} cannot create pods: {failure}")
        pending = [name for name, (kind, pod) in states.items() if name not in ready]
        if all(states[name][0] == "pod" and pod_state(states[name][1]).stuck for name in pending):
            break  # nothing left that waiting would fix (image pull failure, crash loop)
        if time.monotonic() - started >= timeout:
            break
        await asyncio.sleep(interval)
    waited = time.monotonic() - started
    ready_pods: dict[str, str] = {}
    unready: dict[str, str] = {}
    for node in nodes:
        kind, pod = states[node.name]
        if kind == "pod":
            state = pod_state(pod)
            if state.ready:
                ready_pods[node.name] = pod["metadata"]["name"]
            else:
                unready[node.name] = state.reason + ("" if state.stuck else f" (after {waited:.0f}s)")
            continue
        reasons = [f"no agent pod on this node after {waited:.0f}s"]
        if not node.ready:
            reasons.append("node is NotReady")
        blocking = untolerated_taints(node.taints, tolerated)
        if blocking:
            reasons.append(f"taint {', '.join(blocking)} not tolerated by the agents")
        if failure:
            reasons.append(f"DaemonSet: {failure}")
        unready[node.name] = "; ".join(reasons)
    return Readiness(ready_pods, unready, waited)


async def _wait_gone(kube: KubeClient, api_path: str, deadline: float, poll_interval: float) -> bool:
    while time.monotonic() < deadline:
        if await kube.get_or_none(api_path) is None:
            return True
        await asyncio.sleep(poll_interval)
    return await kube.get_or_none(api_path) is None


async def _wait_no_pods(kube: KubeClient, namespace: str, selector: str, deadline: float, poll_interval: float) -> bool:
    pods_path = path("v1", "pods", namespace)
    while time.monotonic() < deadline:
        if not await kube.list(pods_path, label_selector=selector):
            return True
        await asyncio.sleep(poll_interval)
    return not await kube.list(pods_path, label_selector=selector)


async def remove_agents(
    kube: KubeClient, spec: m.AgentSpec, created: list[dict[str, Any]], *, timeout: float, poll_interval: float = 1.0
) -> list[str]:
    """Delete the objects of ``created`` and wait until they are gone (an own namespace takes
    everything in it along); returns what is still there."""
    deadline = time.monotonic() + timeout
    if not created:
        return []
    if created[0]["kind"] == "Namespace":
        ns_path = path("v1", "namespaces", name=spec.namespace)
        await kube.delete(ns_path)
        if not await _wait_gone(kube, ns_path, deadline, poll_interval):
            return [f"namespace {spec.namespace} (still terminating)"]
        return []
    for doc in reversed(created):
        await kube.delete(object_path(doc), propagation="Background")
    selector = m.label_selector({m.LABEL_RUN_ID: spec.run_id})
    if not await _wait_no_pods(kube, spec.namespace, selector, deadline, poll_interval):
        return [f"agent pods of run {spec.run_id} in namespace {spec.namespace} (still terminating)"]
    return []


async def clean(
    kube: KubeClient,
    *,
    namespace: str | None = None,
    run_id: str | None = None,
    timeout: float = 120.0,
    poll_interval: float = 1.0,
    now: float | None = None,
) -> list[str]:
    """Remove what earlier runs left, by label: their namespaces, or (``namespace`` given) their
    DaemonSets, Secrets and ServiceAccounts in that namespace.  Without ``run_id`` only runs past
    their deadline go (``now``: the time to judge that by): a run in flight, another user's, is
    left alone and said so.  Returns one line per namespace or object removed and per run left
    alone; raises CouldNotRun naming what is still there after ``timeout``."""
    if run_id is not None and not wire.valid_run_id(run_id):
        raise UsageError(f"not a run id: {run_id!r}")  # it goes into a label selector
    now = time.time() if now is None else now
    deadline = time.monotonic() + timeout
    if namespace is None:
        lines, left = await _clean_namespaces(kube, run_id, now, deadline, poll_interval)
    else:
        lines, left = await _clean_in_namespace(kube, namespace, run_id, now, deadline, poll_interval)
    if left:
        raise CouldNotRun(
            f"still being removed after {timeout:g}s: {', '.join(left)}", hint="run 'talbench clean' again later"
        )
    return lines


def _selector(run_id: str | None) -> str:
    return f"{m.LABEL_MANAGED_BY}={m.MANAGED_BY}," + (f"{m.LABEL_RUN_ID}={run_id}" if run_id else m.LABEL_RUN_ID)


async def _clean_namespaces(
    kube: KubeClient, run_id: str | None, now: float, deadline: float, poll_interval: float
) -> tuple[list[str], list[str]]:
    """The runs' own namespaces: (lines, what is still there)."""
    found = await kube.list(path("v1", "namespaces"), label_selector=_selector(run_id))
    lines, removed = [], []
    for ns in sorted((ns for ns in found if _has_labels(ns, run_id)), key=lambda ns: ns["metadata"]["name"]):
        name, run = ns["metadata"]["name"], ns["metadata"]["labels"][m.LABEL_RUN_ID]
        live = None if run_id else _in_flight([ns], now)
        if live:
            lines.append(f"left namespace {name} alone: run {run} {live} ('talbench clean --run-id {run}' removes it)")
            continue
        await kube.delete(path("v1", "namespaces", name=name))
        lines.append(f"removed namespace {name}")
        removed.append(name)
    left = [
        f"namespace {name}"
        for name in removed
        if not await _wait_gone(kube, path("v1", "namespaces", name=name), deadline, poll_interval)
    ]
    return lines, left


async def _clean_in_namespace(
    kube: KubeClient, namespace: str, run_id: str | None, now: float, deadline: float, poll_interval: float
) -> tuple[list[str], list[str]]:
    """The runs' objects in one shared namespace, run by run: (lines, what is still there)."""
    runs: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for group_version, plural in (("apps/v1", "daemonsets"), ("v1", "secrets"), ("v1", "serviceaccounts")):
        for obj in await kube.list(path(group_version, plural, namespace), label_selector=_selector(run_id)):
            if _has_labels(obj, run_id):
                runs.setdefault(obj["metadata"]["labels"][m.LABEL_RUN_ID], []).append((group_version, plural, obj))
    lines, removed = [], []
    for run, objects in sorted(runs.items()):
        live = None if run_id else _in_flight([obj for _, _, obj in objects], now)
        if live:
            lines.append(
                f"left the objects of run {run} in namespace {namespace} alone: the run {live} "
                f"('talbench clean --namespace {namespace} --run-id {run}' removes them)"
            )
            continue
        for group_version, plural, obj in objects:
            name = obj["metadata"]["name"]
            if await kube.delete(path(group_version, plural, namespace, name)):
                lines.append(f"removed {plural[:-1]} {namespace}/{name}")
        removed.append(run)
    left = [
        f"agent pods of run {run} in {namespace}"
        for run in removed
        if not await _wait_no_pods(kube, namespace, _selector(run), deadline, poll_interval)
    ]
    return lines, left


def _in_flight(objects: Sequence[Mapping[str, Any]], now: float) -> str | None:
    """Why a run whose objects these are may still be running ("in flight until ..."), or None
    when it is over: past the latest deadline its objects carry (an object without the annotation,
    from an older talbench, counts from its creation).  A run whose end is not known is in flight."""
    ends = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        end = m.parse_time((meta.get("annotations") or {}).get(m.ANNOTATION_DEADLINE))
        if end is None:
            created = m.parse_time(meta.get("creationTimestamp"))
            end = None if created is None else created + m.RUN_DEADLINE_S
        if end is None:
            return "has no deadline"
        ends.append(end)
    latest = max(ends, default=0.0)
    if latest <= now:
        return None
    if any((obj.get("metadata") or {}).get("deletionTimestamp") for obj in objects):
        return f"is being removed (in flight until {m.deadline_text(latest)})"
    return f"is in flight until {m.deadline_text(latest)}"


def _pod_security_hint(spec: m.AgentSpec) -> str:
    command = f"kubectl label namespace {spec.namespace} --overwrite " + " ".join(
        f"{key}={value}" for key, value in m.PSA_LABELS.items()
    )
    if spec.own_namespace:  # created with those labels: something overrides them
        return (
            f"the run's namespace has the privileged labels; an admission policy or webhook overrides them ({command})"
        )
    return f"the agents need a privileged namespace: {command}"


def _has_labels(obj: Mapping[str, Any], run_id: str | None) -> bool:
    """Client-side check of the selector (never delete what is not ours, whatever the server did)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(m.LABEL_MANAGED_BY) != m.MANAGED_BY or m.LABEL_RUN_ID not in labels:
        return False
    return run_id is None or labels[m.LABEL_RUN_ID] == run_id
