"""One lab node's kubelet duties, as that node (its own client certificate): keep the Node Ready
(a Lease in kube-node-lease renewed every 10 s, the Node's status patched every 40 s: conditions,
addresses, capacity, node info) and run the pods bound to it (a list, then a watch with
``fieldSelector=spec.nodeName=<node>``, the only pod listing the Node authorizer allows a node).

The Node's labels and taints are never touched: ``lab up`` registered them as Talos does
(testbed/kubelab/control/nodes.py), and the node lifecycle controller removes its own not-ready taints
once the node reports Ready.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.image.oci_image import goarch
from testbed.kubelab.kubelet.api import ApiError
from testbed.kubelab.kubelet.container import NodeContext
from testbed.kubelab.kubelet.pod import PodWorker
from testbed.kubelab.kubelet.status import now

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 40.0
RESYNC = 10.0
RETRY = 1.0
MAX_PODS = 110
RUNC_VERSION = "runc://1.1"


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_status(ctx: NodeContext, ready_since: str) -> dict[str, Any]:
    node = ctx.node
    stamp = now()
    ident = hashlib.sha256(f"{ctx.config.lab_id}/{node.name}".encode()).hexdigest()

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": ready_since,
        }

    resources = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki", "pods": str(MAX_PODS)}
    return {
        "conditions": [
            condition(
                "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "talbench lab kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": node.address}, {"type": "Hostname", "address": node.name}],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": ident[:32],
            "systemUUID": ident[32:64],
            "bootID": ident[:32],
            "kernelVersion": platform.release(),
            "osImage": "talbench lab",
            "containerRuntimeVersion": RUNC_VERSION,
            "kubeletVersion": ctx.config.version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": goarch(),
        },
    }


class NodeKubelet:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.workers: dict[str, tuple[PodWorker, asyncio.Task[None]]] = {}
        self.finished: set[str] = set()  # uids whose worker is done: later events about them change nothing

    async def run(self) -> None:
        tasks = [asyncio.create_task(job()) for job in (self._heartbeat, self._pods, self._resync)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            workers = [task for _, task in self.workers.values()]
            for task in workers:
                task.cancel()  # containers keep running, as a real kubelet leaves them: lab down stops them
            await asyncio.gather(*tasks, *workers, return_exceptions=True)

    # -- the node ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        api, name = self.ctx.api, self.ctx.node.name
        ready_since = now()
        last_status = 0.0
        lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        while True:
            try:
                await self._renew_lease(lease_path, name)
                loop_time = asyncio.get_running_loop().time()
                if loop_time - last_status >= STATUS_EVERY or not last_status:
                    await api.patch(f"/api/v1/nodes/{name}/status", {"status": node_status(self.ctx, ready_since)})
                    last_status = loop_time
            except ApiError as exc:
                log.warning("node %s: heartbeat: %s", name, exc)
                await asyncio.sleep(RETRY)
                continue
            await asyncio.sleep(LEASE_RENEW)

    async def _renew_lease(self, base: str, name: str) -> None:
        api = self.ctx.api
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_now()}
        try:
            lease = await api.get(f"{base}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = await api.get(f"/api/v1/nodes/{name}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
            body = {"metadata": {"name": name, "ownerReferences": [owner]}, "spec": spec}
            await api.call("POST", base, body=body)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await api.call("PUT", f"{base}/{name}", body=lease)

    # -- the node's pods ---------------------------------------------------------------------

    async def _pods(self) -> None:
        api, name = self.ctx.api, self.ctx.node.name
        selector = f"spec.nodeName={name}"
        version: str | None = None
        while True:
            try:
                if version is None:
                    listing = await api.get("/api/v1/pods", fieldSelector=selector)
                    version = str(listing["metadata"]["resourceVersion"])
                    present = set()
                    for pod in listing.get("items") or ():
                        present.add(pod["metadata"]["uid"])
                        self._observe(pod)
                    for uid in set(self.workers) - present:
                        self.workers[uid][0].gone()
                    self.finished &= present
                async for event in api.watch("/api/v1/pods", fieldSelector=selector, resourceVersion=version):
                    kind, pod = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":  # 410 Gone: too old a version; list again
                        version = None
                        break
                    version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "DELETED":
                        uid = pod["metadata"]["uid"]
                        self.finished.discard(uid)
                        if uid in self.workers:
                            self.workers[uid][0].gone()
                    elif kind in ("ADDED", "MODIFIED"):
                        self._observe(pod)
            except (ApiError, KeyError, TypeError) as exc:
                log.warning("node %s: pods: %s", name, exc)
                version = None
                await asyncio.sleep(RETRY)

    def _observe(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        uid = str(meta["uid"])
        if uid in self.workers:
            self.workers[uid][0].update(pod)
            return
        if uid in self.finished:
            return
        deleting = bool(meta.get("deletionTimestamp"))
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if deleting or terminal:
            if deleting:  # nothing of it runs here (the kubelet never started it): let it go
                self.finished.add(uid)
                asyncio.get_running_loop().create_task(self._force_delete(meta))
            return
        worker = PodWorker(self.ctx, pod)
        task = asyncio.create_task(self._run_worker(worker))
        self.workers[uid] = (worker, task)
        log.info("node %s: pod %s/%s (%s) started", self.ctx.node.name, worker.namespace, worker.name, uid)

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:  # one pod's failure is not the node's
            log.exception("node %s: pod %s/%s", self.ctx.node.name, worker.namespace, worker.name)
        finally:
            self.workers.pop(worker.uid, None)
            self.finished.add(worker.uid)

    async def _force_delete(self, meta: Mapping[str, Any]) -> None:
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            await self.ctx.api.call("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("node %s: pod %s: %s", self.ctx.node.name, meta["name"], exc)

    def find_log(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        """Where a container of one of this node's pods wrote its output (the kubelet endpoint's logs)."""
        for worker, _ in self.workers.values():
            if (worker.namespace, worker.name) == (namespace, pod):
                return worker.log_path(container, previous)
        return None

    async def _resync(self) -> None:
        """Report again what could not be reported (the API server was away)."""
        while True:
            await asyncio.sleep(RESYNC)
            for worker, _ in list(self.workers.values()):
                await worker.publish()
