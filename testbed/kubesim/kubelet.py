"""The one simulated kubelet, for the emulator and the scale simulator alike: which pods are its
nodes', the state it reports for each (waiting with a node's forced fault, ContainerCreating
where nothing can run, Running and Ready or not, CrashLoopBackOff with the last log lines) and
starting and stopping what runs for a pod.

It talks to "the API" through PodApi (the emulator's in-memory store, emulator.py; a real
kube-apiserver, kubelets.py) and starts what runs for a pod through a Runtime (the pod's real
command as a child process, container.py; a simulated agent in-process, kubelets.py).  How pods
reach it is the caller's: the emulator calls ``sync`` for every pod on each tick, the simulator
``notify`` for every pod its watch delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Protocol

from . import pods
from .nodes import SimNode

log = logging.getLogger("testbed.kubesim.kubelet")


class PodApi(Protocol):
    """What the kubelet reads and writes through the API."""

    async def secret(self, namespace: str, name: str) -> Mapping[str, Any]:
        """The Secret object (``data`` base64-encoded); empty when there is none."""
        ...

    async def write_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        """Replace the pod's status with ``status``."""
        ...

    async def delete_pod(self, pod: Mapping[str, Any]) -> bool:
        """Delete the pod at once (its containers are gone), this uid only; False if it was
        already gone or replaced."""
        ...


class Workload(Protocol):
    """What runs for one pod."""

    def exit_code(self) -> int | None:
        """None while it runs."""
        ...

    def termination(self, pod: Mapping[str, Any]) -> dict[str, str]:
        """Extra fields of ``lastState.terminated`` once it has exited (its message)."""
        ...

    async def ready(self) -> bool:
        """Whether its readiness probe passes."""
        ...

    async def stop(self) -> None: ...


class Runtime(Protocol):
    """How a node starts what runs for a pod."""

    def runs_on(self, node: SimNode) -> bool:
        """Whether anything can run on ``node`` (else its pods stay ContainerCreating)."""
        ...

    async def start(self, pod: Mapping[str, Any], node: SimNode, api: PodApi) -> Workload: ...


class Kubelet:
    """The kubelets of ``nodes``: one object, one API, one runtime."""

    def __init__(self, api: PodApi, runtime: Runtime, nodes: Iterable[SimNode]) -> None:
        self.api = api
        self.runtime = runtime
        self.nodes = {n.name: n for n in nodes}
        self.workloads: dict[str, Workload] = {}  # pod uid -> what runs for it
        self.written: dict[str, tuple[Any, ...]] = {}  # pod uid -> the state last written
        self.counts = {"pods_started": 0, "pods_deleted": 0}
        self._busy: set[str] = set()  # uids with a sync in flight (notify)
        self._deleting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def node_of(self, pod: Mapping[str, Any]) -> SimNode | None:
        """The node of this kubelet the pod is bound to, if any."""
        return self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")

    # ---- one pod ----------------------------------------------------------------------------

    async def sync(self, pod: Mapping[str, Any]) -> None:
        """Bring what runs for ``pod`` and its reported state up to date."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        node = self.node_of(pod)
        if node is None or not uid:
            return
        if meta.get("deletionTimestamp"):
            await self._delete(pod, uid)
            return
        status: dict[str, Any] = copy.deepcopy(dict(pod.get("status") or {}))
        if uid not in self.workloads and uid not in self.written and status.get("phase") in pods.STARTED_PHASES:
            return  # not started by this kubelet
        state: tuple[Any, ...]
        if node.failure:
            image = pod["spec"]["containers"][0].get("image", "")
            state = ("waiting", node.failure)
            pods.set_waiting(status, node.failure, pods.waiting_message(node.failure, image))
        elif not self.runtime.runs_on(node):
            state = ("waiting", "ContainerCreating")
            pods.set_waiting(status, "ContainerCreating", "no kubelet on this node")
        else:
            workload = self.workloads.get(uid)
            if workload is None:
                workload = await self.runtime.start(pod, node, self.api)
                self.workloads[uid] = workload
                self.counts["pods_started"] += 1
            code = workload.exit_code()
            if code is not None:
                state = ("crashed", code)
                pods.set_crash_loop(status, code, workload.termination(pod))
            else:
                ready = await workload.ready()
                state = ("running", ready)
                status.update(pods.running(pod, node.address, ready=ready))
        if self.written.get(uid) != state:
            await self.api.write_status(pod, status)
            self.written[uid] = state

    async def _delete(self, pod: Mapping[str, Any], uid: str) -> None:
        workload = self.workloads.pop(uid, None)
        if workload is not None:
            await workload.stop()
        self.written.pop(uid, None)
        if await self.api.delete_pod(pod):
            self.counts["pods_deleted"] += 1

    async def forget(self, live: set[str]) -> None:
        """Stop what runs for pods no longer in the API (uids not in ``live``)."""
        for uid in [uid for uid in self.workloads if uid not in live]:
            await self.workloads.pop(uid).stop()
        for uid in [uid for uid in self.written if uid not in live]:
            del self.written[uid]

    # ---- pods delivered by a watch ----------------------------------------------------------

    def notify(self, pod: Mapping[str, Any]) -> None:
        """Sync ``pod`` in the background, unless a sync of it is in flight."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        if self.node_of(pod) is None or not uid:
            return
        if meta.get("deletionTimestamp"):
            if uid not in self._deleting:
                self._deleting.add(uid)
                self._spawn(self.sync(pod))
        elif uid not in self._busy and uid not in self._deleting:
            self._busy.add(uid)
            self._spawn(self._sync_once(pod, uid))

    async def _sync_once(self, pod: Mapping[str, Any], uid: str) -> None:
        try:
            await self.sync(pod)
        finally:
            self._busy.discard(uid)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pod task failed: %s", task.exception())

    async def stop(self) -> None:
        """Cancel pending syncs and stop everything running."""
        for task in list(self._tasks):
            task.cancel()
        for workload in list(self.workloads.values()):
            with contextlib.suppress(Exception):
                await workload.stop()
        self.workloads.clear()
