"""SIMULATED kubelets for the coordinator's scale benchmark: what a thousand kubelets would do
for the talbench DaemonSet, done by one client (the lab's kubelet-client certificate, user
``kube-apiserver-kubelet-client``, so that the audit log tells its requests from the
coordinator's).

* register the simulated Nodes (Ready), and delete them at the end (one deletecollection);
* one list + watch over all pods: a pod bound to a simulated node has its agent started (the
  token read from the pod's Secret, the port from its ``--listen-port``) and is reported Running
  and Ready with hostIP = podIP = the node's address (hostNetwork); a pod with a
  deletionTimestamp has its agent stopped and is deleted at once (grace 0, uid precondition), as
  a kubelet does once its containers are gone.

No Leases, no status heartbeats: the benchmark's controller manager allows an hour without them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from talbench.agents import wire
from talbench.agents.main import server_tls
from talbench.bench.kube.client import KubeApiError, KubeClient, path

from . import pods
from .agents import AgentServer, Simulation
from .nodes import SIM_LABEL, SimNode, node_object

log = logging.getLogger("testbed.kubesim.kubelets")
CONCURRENCY = 16  # requests in flight from the simulator
WATCH_TIMEOUT_S = 240
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


class Kubelets:
    def __init__(self, kube: KubeClient, sim: Simulation, sim_id: str, nodes: Sequence[SimNode]) -> None:
        self.kube = kube
        self.sim = sim
        self.sim_id = sim_id
        self.nodes = {n.name: n for n in nodes}
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.agents: dict[str, AgentServer] = {}  # pod uid -> its agent
        self.handled: set[str] = set()  # pod uids started (or being started)
        self.deleting: set[str] = set()
        self.tokens: dict[tuple[str, str], tuple[str, ssl.SSLContext | None]] = {}
        self.counts = {"pods_started": 0, "pods_deleted": 0, "requests": 0}
        self.tasks: set[asyncio.Task[None]] = set()

    async def _call(self, method: str, api_path: str, **kwargs: Any) -> dict[str, Any]:
        async with self.gate:
            self.counts["requests"] += 1
            return await self.kube.request(method, api_path, **kwargs)

    # ---- nodes ------------------------------------------------------------------------------

    async def register(self) -> None:
        async def one(node: SimNode) -> None:
            obj = node_object(node)
            created = await self._call("POST", path("v1", "nodes"), body=obj)
            conditions = (created.get("status") or {}).get("conditions") or ()
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                await self._patch(path("v1", "nodes", name=node.name, sub="status"), {"status": obj["status"]})

        await asyncio.gather(*(one(n) for n in self.nodes.values()))

    async def wait_schedulable(self, timeout: float) -> float:
        """Until the node lifecycle controller has seen every simulated Node Ready and removed the
        not-ready taint the API server puts on new Nodes; returns the seconds waited."""
        started = time.monotonic()
        while True:
            listed = await self._call(
                "GET", path("v1", "nodes"), params={"labelSelector": f"{SIM_LABEL}={self.sim_id}"}
            )
            items = listed.get("items") or []
            tainted = [
                n
                for n in items
                if any(t.get("key") == NOT_READY_TAINT for t in (n.get("spec") or {}).get("taints") or ())
            ]
            if len(items) == len(self.nodes) and not tainted:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{len(tainted)} of {len(items)} simulated nodes still tainted not-ready")
            await asyncio.sleep(2.0)

    async def unregister(self) -> None:
        with contextlib.suppress(Exception):
            await self._call(
                "DELETE", path("v1", "nodes"), params={"labelSelector": f"{SIM_LABEL}={self.sim_id}"}, timeout=60
            )

    # ---- pods -------------------------------------------------------------------------------

    async def _patch(self, api_path: str, body: Mapping[str, Any]) -> None:
        async with self.gate:
            self.counts["requests"] += 1
            async with self.kube.session.patch(
                self.kube.url(api_path),
                data=json.dumps(body),
                headers={"Content-Type": "application/merge-patch+json", **self.kube.headers()},
            ) as response:
                if response.status >= 400:
                    raise KubeApiError(response.status, response.reason or "", (await response.text())[:200])

    async def run_pods(self) -> None:
        """List, then watch (re-listing when the watch ends), until cancelled."""
        while True:
            listed = await self._call("GET", path("v1", "pods"))
            for pod in listed.get("items") or ():
                self.on_pod(pod)
            version = (listed.get("metadata") or {}).get("resourceVersion", "")
            try:
                await self._watch(version)
            except (TimeoutError, OSError, ValueError) as exc:
                log.warning("pod watch ended: %s", exc)
                await asyncio.sleep(1.0)

    async def _watch(self, version: str) -> None:
        params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        self.counts["requests"] += 1
        async with self.kube.session.get(
            self.kube.url(path("v1", "pods")), params=params, headers=self.kube.headers(), timeout=None
        ) as response:
            if response.status >= 400:
                raise ValueError(f"watch: HTTP {response.status}")
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise ValueError(f"watch error: {event.get('object', {}).get('message')}")
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self.on_pod(event["object"])

    def on_pod(self, pod: Mapping[str, Any]) -> None:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        node = self.nodes.get(spec.get("nodeName") or "")
        uid = meta.get("uid", "")
        if node is None or not uid:
            return
        if meta.get("deletionTimestamp"):
            if uid not in self.deleting:
                self.deleting.add(uid)
                self._spawn(self._delete(pod))
            return
        if uid not in self.handled and (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
            self.handled.add(uid)
            self._spawn(self._start(pod, node))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pod task failed: %s", task.exception())

    async def _token(self, namespace: str, secret: str) -> tuple[str, ssl.SSLContext | None]:
        """The run's token, and its agents' TLS (one context for all of them) when it has one."""
        key = (namespace, secret)
        if key not in self.tokens:
            obj = await self._call("GET", path("v1", "secrets", namespace, secret))
            data = {name: base64.b64decode(value) for name, value in obj["data"].items()}
            context = None
            if "tls.crt" in data:  # the agents serve HTTPS (bench/agent_tls.py), loaded as the agent does
                files = {name: Path(self.sim.data_dir) / f"{secret}-{name}" for name in ("tls.crt", "tls.key")}
                for name, file in files.items():
                    file.touch(mode=0o600)
                    file.write_bytes(data[name])
                try:
                    context = server_tls(str(files["tls.crt"]), str(files["tls.key"]))
                finally:
                    for file in files.values():
                        file.unlink()
            self.tokens[key] = (data["token"].decode(), context)
        return self.tokens[key]

    async def _start(self, pod: Mapping[str, Any], node: SimNode) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        args = list(container.get("args") or ())
        port = int(args[args.index("--listen-port") + 1]) if "--listen-port" in args else wire.DEFAULT_PORT
        secret = next(v["secret"]["secretName"] for v in spec.get("volumes") or () if "secret" in v)
        token, tls = await self._token(meta["namespace"], secret)
        agent = AgentServer(self.sim, node.name, node.address, port, token, tls)
        await agent.start()
        self.agents[meta["uid"]] = agent
        status = pods.running(pod, node.address)
        await self._patch(path("v1", "pods", meta["namespace"], meta["name"], sub="status"), {"status": status})
        self.counts["pods_started"] += 1

    async def _delete(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        agent = self.agents.pop(meta["uid"], None)
        if agent is not None:
            await agent.stop()
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            await self._call("DELETE", path("v1", "pods", meta["namespace"], meta["name"]), body=body)
            self.counts["pods_deleted"] += 1
        except KubeApiError as exc:
            if exc.status not in (404, 409):
                raise

    async def stop_agents(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for agent in list(self.agents.values()):
            with contextlib.suppress(Exception):
                await agent.stop()
        self.agents.clear()
