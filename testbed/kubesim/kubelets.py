"""SIMULATED kubelets for the coordinator's scale benchmark against a REAL API server: what a
thousand kubelets would do for the talbench DaemonSet, done by one client (the lab's
kubelet-client certificate, user ``kube-apiserver-kubelet-client``, so that the audit log tells
its requests from the coordinator's).  The pods' lifecycle is the one kubelet's (kubelet.py);
here are its API, its runtime and what only a real API server needs:

* ``ApiServerPods``, the kubelet's API over the real one: status written by a merge patch, a
  pod deleted at once (grace 0, uid precondition), as a kubelet does once its containers are
  gone;
* ``SimulatedAgents``, its runtime: an in-process agent per pod (agents.py; the token read from
  the pod's Secret, the port from its ``--listen-port``), always Ready;
* ``Kubelets``: register the simulated Nodes (Ready), and delete them at the end (one
  deletecollection); one list + watch over all pods, each delivered to the kubelet.

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

from .agents import AgentServer, Simulation
from .kubelet import Kubelet, PodApi
from .nodes import SIM_LABEL, SimNode, node_object

log = logging.getLogger("testbed.kubesim.kubelets")
CONCURRENCY = 16  # requests in flight from the simulator
WATCH_TIMEOUT_S = 240
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


class ApiServerPods:
    """The kubelet's API (kubelet.PodApi) over a real API server, at most CONCURRENCY requests
    in flight, counted."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.requests = 0

    async def call(self, method: str, api_path: str, **kwargs: Any) -> dict[str, Any]:
        async with self.gate:
            self.requests += 1
            return await self.kube.request(method, api_path, **kwargs)

    async def patch(self, api_path: str, body: Mapping[str, Any]) -> None:
        async with self.gate:
            self.requests += 1
            async with self.kube.session.patch(
                self.kube.url(api_path),
                data=json.dumps(body),
                headers={"Content-Type": "application/merge-patch+json", **self.kube.headers()},
            ) as response:
                if response.status >= 400:
                    raise KubeApiError(response.status, response.reason or "", (await response.text())[:200])

    async def secret(self, namespace: str, name: str) -> Mapping[str, Any]:
        return await self.call("GET", path("v1", "secrets", namespace, name))

    async def write_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        await self.patch(path("v1", "pods", meta["namespace"], meta["name"], sub="status"), {"status": status})

    async def delete_pod(self, pod: Mapping[str, Any]) -> bool:
        meta = pod["metadata"]
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            await self.call("DELETE", path("v1", "pods", meta["namespace"], meta["name"]), body=body)
        except KubeApiError as exc:
            if exc.status not in (404, 409):
                raise
            return False
        return True


class SimulatedAgent:
    """What runs for a pod on a simulated node: its in-process agent, Ready once started."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server

    def exit_code(self) -> int | None:
        return None

    def termination(self, pod: Mapping[str, Any]) -> dict[str, str]:
        return {}

    async def ready(self) -> bool:
        return True

    async def stop(self) -> None:
        await self.server.stop()


class SimulatedAgents:
    """The runtime of the simulated nodes: an in-process agent per pod."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.tokens: dict[tuple[str, str], tuple[str, ssl.SSLContext | None]] = {}

    def runs_on(self, node: SimNode) -> bool:
        return True

    async def _token(self, api: PodApi, namespace: str, secret: str) -> tuple[str, ssl.SSLContext | None]:
        """The run's token, and its agents' TLS (one context for all of them) when it has one."""
        key = (namespace, secret)
        if key not in self.tokens:
            obj = await api.secret(namespace, secret)
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

    async def start(self, pod: Mapping[str, Any], node: SimNode, api: PodApi) -> SimulatedAgent:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        args = list(container.get("args") or ())
        port = int(args[args.index("--listen-port") + 1]) if "--listen-port" in args else wire.DEFAULT_PORT
        secret = next(v["secret"]["secretName"] for v in spec.get("volumes") or () if "secret" in v)
        token, tls = await self._token(api, meta["namespace"], secret)
        server = AgentServer(self.sim, node.name, node.address, port, token, tls)
        await server.start()
        return SimulatedAgent(server)


class Kubelets:
    """The simulated nodes' kubelet against a real API server: their Nodes, and the pods its
    watch delivers."""

    def __init__(self, kube: KubeClient, sim: Simulation, sim_id: str, nodes: Sequence[SimNode]) -> None:
        self.kube = kube
        self.sim_id = sim_id
        self.nodes = {n.name: n for n in nodes}
        self.api = ApiServerPods(kube)
        self.kubelet = Kubelet(self.api, SimulatedAgents(sim), nodes)

    @property
    def counts(self) -> dict[str, int]:
        return {**self.kubelet.counts, "requests": self.api.requests}

    # ---- nodes ------------------------------------------------------------------------------

    async def register(self) -> None:
        async def one(node: SimNode) -> None:
            obj = node_object(node)
            created = await self.api.call("POST", path("v1", "nodes"), body=obj)
            conditions = (created.get("status") or {}).get("conditions") or ()
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                await self.api.patch(path("v1", "nodes", name=node.name, sub="status"), {"status": obj["status"]})

        await asyncio.gather(*(one(n) for n in self.nodes.values()))

    async def wait_schedulable(self, timeout: float) -> float:
        """Until the node lifecycle controller has seen every simulated Node Ready and removed the
        not-ready taint the API server puts on new Nodes; returns the seconds waited."""
        started = time.monotonic()
        while True:
            listed = await self.api.call(
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
            await self.api.call(
                "DELETE", path("v1", "nodes"), params={"labelSelector": f"{SIM_LABEL}={self.sim_id}"}, timeout=60
            )

    # ---- pods -------------------------------------------------------------------------------

    async def run_pods(self) -> None:
        """List, then watch (re-listing when the watch ends), until cancelled."""
        while True:
            listed = await self.api.call("GET", path("v1", "pods"))
            for pod in listed.get("items") or ():
                self.kubelet.notify(pod)
            version = (listed.get("metadata") or {}).get("resourceVersion", "")
            try:
                await self._watch(version)
            except (TimeoutError, OSError, ValueError) as exc:
                log.warning("pod watch ended: %s", exc)
                await asyncio.sleep(1.0)

    async def _watch(self, version: str) -> None:
        params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        self.api.requests += 1
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
                    self.kubelet.notify(event["object"])

    async def stop_agents(self) -> None:
        await self.kubelet.stop()
