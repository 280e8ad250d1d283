"""A stateful Kubernetes API emulator on a real local HTTP server (127.0.0.1), plus a cluster
simulation that plays the controllers a run depends on:

- the DaemonSet controller: one Pod per matching node (nodeSelector, tolerations), its IP the
  node's address; Pod Security admission
  (Talos default: baseline; the namespace's enforce label wins) rejects pods with FailedCreate
  events;
- the namespace controller: a deleted namespace is Terminating until its content is gone;
- garbage collection of a deleted DaemonSet's pods;
- the kubelet (kubelet.py, the scale simulator's too) over the store: each pod's real agent
  command run as a child process (container.py), Ready when it answers its readiness probe
  (GET /v1/health), or the node's forced fault;
- the pod proxy: ``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/...`` goes to the node's real agent
  (a unix socket of a lab node, or a loopback TCP address).

kmock (PyPI) was tried first: its 0.8 path parser cannot address namespaces
(``/api/v1/namespaces`` answers 500, ``/api/v1/namespaces/NAME`` is read as a namespace without a
resource) and it has no label/field selectors or cascading deletion, all of which a run uses.

Every request a client makes is recorded (``requests``): tests read from it whether the pod proxy
was used and which namespaces a run touched.  The simulation acts on the store directly and is
not recorded.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from testbed.kubesim import pods
from testbed.kubesim.container import Containers
from testbed.kubesim.kubelet import Kubelet
from testbed.kubesim.nodes import SimNode

RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "namespaces"): ("Namespace", False),
    ("v1", "nodes"): ("Node", False),
    ("v1", "pods"): ("Pod", True),
    ("v1", "events"): ("Event", True),
    ("v1", "serviceaccounts"): ("ServiceAccount", True),
    ("v1", "secrets"): ("Secret", True),
    ("v1", "configmaps"): ("ConfigMap", True),
    ("apps/v1", "daemonsets"): ("DaemonSet", True),
}


@dataclass(frozen=True)
class Recorded:
    method: str
    verb: str  # get list watch create update patch delete deletecollection
    group: str
    resource: str  # with subresource: "pods/proxy"
    namespace: str | None
    name: str | None
    path: str


def _parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    terms: list[tuple[str, str, str | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append((key, "!=", value))
        elif "=" in part:
            key, value = part.split("=", 1)
            terms.append((key.rstrip("="), "=", value))
        elif part.startswith("!"):
            terms.append((part[1:], "!", None))
        else:
            terms.append((part, "exists", None))
    return terms


def _selected(values: Mapping[str, str], terms: list[tuple[str, str, str | None]]) -> bool:
    for key, op, value in terms:
        if op == "=" and values.get(key) != value:
            return False
        if op == "!=" and values.get(key) == value:
            return False
        if op == "exists" and key not in values:
            return False
        if op == "!" and key in values:
            return False
    return True


def _fields(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    out = {"metadata.name": str(meta.get("name", "")), "metadata.namespace": str(meta.get("namespace", ""))}
    if obj.get("kind") == "Pod":
        out["spec.nodeName"] = str((obj.get("spec") or {}).get("nodeName", ""))
        out["status.phase"] = str((obj.get("status") or {}).get("phase", ""))
    if obj.get("kind") == "Event":
        for key, value in (obj.get("involvedObject") or {}).items():
            out[f"involvedObject.{key}"] = str(value)
        out["reason"] = str(obj.get("reason", ""))
    return out


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message},
        status=code,
    )


# Pod Security's baseline checks that a DaemonSet of talbench's agents meets, worded as the real
# API server words them.  Admission itself is tested against a real API server
# (tests/bench/kube/test_real_rbac.py); the emulator only needs a rejection to report.
_DEFAULT_CAPABILITIES = {
    *("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE"),
    *("SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"),
}


def baseline_violations(spec: Mapping[str, Any]) -> list[str]:
    found = [f"host namespaces ({key}=true)" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for container in spec.get("containers") or ():
        name, ctx = container["name"], container.get("securityContext") or {}
        added = sorted(set((ctx.get("capabilities") or {}).get("add") or ()) - _DEFAULT_CAPABILITIES)
        if added:
            caps = ", ".join(f'"{cap}"' for cap in added)
            found.append(
                f'non-default capabilities (container "{name}" must not include {caps} in securityContext.capabilities.add)'
            )
        ports = [str(p["hostPort"]) for p in container.get("ports") or () if p.get("hostPort")]
        if ports:
            found.append(f'hostPort (container "{name}" uses hostPort {", ".join(ports)})')
    return found


class StorePods:
    """The kubelet's API (kubelet.PodApi) over the emulator's store: it acts on the store
    directly, not recorded as requests."""

    def __init__(self, store: dict[tuple[str, str, str | None, str], dict[str, Any]]) -> None:
        self.store = store

    @staticmethod
    def _key(pod: Mapping[str, Any]) -> tuple[str, str, str | None, str]:
        return ("v1", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])

    async def secret(self, namespace: str, name: str) -> Mapping[str, Any]:
        return self.store.get(("v1", "secrets", namespace, name)) or {}

    async def write_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        stored = self.store.get(self._key(pod))
        if stored is not None and stored["metadata"]["uid"] == pod["metadata"]["uid"]:
            stored["status"] = status

    async def delete_pod(self, pod: Mapping[str, Any]) -> bool:
        stored = self.store.get(self._key(pod))
        if stored is None or stored["metadata"]["uid"] != pod["metadata"]["uid"]:
            return False
        del self.store[self._key(pod)]
        return True


class ApiEmulator:
    def __init__(
        self,
        nodes: list[SimNode],
        *,
        token: str | None = None,
        default_pod_security: str = "baseline",  # what Talos enforces cluster-wide
        forced_pod_security: str | None = None,  # an admission policy that ignores namespace labels
        tick: float = 0.1,
        namespace_grace: float = 0.3,  # how long a deleted namespace stays Terminating (at least)
        server_version: str = "v1.31.4",
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.token = token if token is not None else secrets.token_urlsafe(16)
        self.default_pod_security = default_pod_security
        self.forced_pod_security = forced_pod_security
        self.tick = tick
        self.namespace_grace = namespace_grace
        self.server_version = server_version
        self.store: dict[tuple[str, str, str | None, str], dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self._rv = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sim: asyncio.Task[None] | None = None
        self._agents: aiohttp.ClientSession | None = None
        self._unix_sessions: dict[Path, aiohttp.ClientSession] = {}
        self._rejected_at: dict[tuple[str, str], float] = {}
        self.kubelet = Kubelet(StorePods(self.store), Containers(self._healthy), nodes)
        self.url = ""
        for node in nodes:
            self._put("v1", "nodes", None, node.as_object())

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ApiEmulator:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._agents = aiohttp.ClientSession()
        self._sim = asyncio.create_task(self._simulate())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sim is not None:
            self._sim.cancel()
            try:
                await self._sim
            except asyncio.CancelledError:
                pass
        await self.kubelet.stop()
        for session in [self._agents, *self._unix_sessions.values()]:
            if session is not None:
                await session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, path: Path, *, context: str = "emulated") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": context,
                    "clusters": [{"name": "emu", "cluster": {"server": self.url}}],
                    "users": [{"name": "emu-user", "user": {"token": self.token}}],
                    "contexts": [{"name": context, "context": {"cluster": "emu", "user": "emu-user"}}],
                }
            )
        )
        return path

    # ---- store -------------------------------------------------------------------------------

    def _put(self, gv: str, plural: str, ns: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        kind, _ = RESOURCES[(gv, plural)]
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", secrets.token_hex(8))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        meta["resourceVersion"] = str(next(self._rv))
        if ns is not None:
            meta["namespace"] = ns
        obj.setdefault("apiVersion", gv)
        obj.setdefault("kind", kind)
        self.store[(gv, plural, ns, meta["name"])] = obj
        return obj

    def objects(self, plural: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for (gv, pl, ns, _), obj in self.store.items()
            if (plural is None or pl == plural) and (namespace is None or ns == namespace)
        ]

    def run_objects(self, run_id: str) -> list[str]:
        """Everything in the store that carries ``run_id`` (or lives in its namespace)."""
        found = []
        for (_gv, plural, ns, name), obj in self.store.items():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels.get("talbench.io/run-id") == run_id or (ns or "").endswith(run_id.lower()):
                found.append(f"{plural}/{ns or ''}/{name}")
        return sorted(found)

    # ---- HTTP --------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            self.requests.append(Recorded(request.method, "get", "", "", None, None, "/version"))
            major, minor = self.server_version.lstrip("v").split(".")[:2]
            return web.json_response(
                {"major": major, "minor": minor, "gitVersion": self.server_version, "platform": "linux/amd64"}
            )
        if parts[:2] == ["api", "v1"]:
            gv, rest = "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return _status(404, "NotFound", f"no route {request.path}")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return _status(404, "NotFound", f"no route {request.path}")
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), "/".join(rest[2:]) or None
        if (gv, plural) not in RESOURCES:
            return _status(404, "NotFound", f"the server could not find the requested resource ({gv}/{plural})")
        group = gv.split("/")[0] if "/" in gv else ""
        if sub and sub.split("/")[0] == "proxy":
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                request.method, "get"
            )
            self.requests.append(Recorded(request.method, verb, group, f"{plural}/proxy", ns, name, request.path))
            return await self._proxy(request, ns, name or "", sub[len("proxy") :])
        if request.method == "GET":
            verb = "watch" if request.query.get("watch") in ("true", "1") else ("get" if name else "list")
        else:
            verb = {
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection",
            }[request.method]
        self.requests.append(
            Recorded(request.method, verb, group, plural + (f"/{sub}" if sub else ""), ns, name, request.path)
        )
        body = await request.json() if request.can_read_body else None
        _, namespaced = RESOURCES[(gv, plural)]
        if verb == "list":
            return self._list(gv, plural, ns, request.query)
        if verb == "get":
            obj = self.store.get((gv, plural, ns, name or ""))
            return (
                web.json_response(obj) if obj is not None else _status(404, "NotFound", f'{plural} "{name}" not found')
            )
        if verb == "create":
            return self._create(gv, plural, ns if namespaced else None, body or {})
        if verb == "patch":
            obj = self.store.get((gv, plural, ns, name or ""))
            if obj is None:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            return web.json_response(self._put(gv, plural, ns, _merge(obj, body or {})))
        if verb == "delete":
            return self._delete(gv, plural, ns, name or "")
        return _status(405, "MethodNotAllowed", f"{verb} is not emulated")

    def _list(self, gv: str, plural: str, ns: str | None, query: Mapping[str, str]) -> web.Response:
        labels = _parse_selector(query.get("labelSelector", ""))
        fields = _parse_selector(query.get("fieldSelector", ""))
        items = [
            obj
            for (g, pl, o_ns, _), obj in sorted(self.store.items(), key=lambda kv: str(kv[0]))
            if g == gv
            and pl == plural
            and (ns is None or o_ns == ns)
            and _selected((obj.get("metadata") or {}).get("labels") or {}, labels)
            and _selected(_fields(obj), fields)
        ]
        kind, _ = RESOURCES[(gv, plural)]
        return web.json_response(
            {
                "apiVersion": gv,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(next(self._rv))},
                "items": items,
            }
        )

    def _create(self, gv: str, plural: str, ns: str | None, body: dict[str, Any]) -> web.Response:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return _status(422, "Invalid", "metadata.name: Required value")
        body_ns = (body.get("metadata") or {}).get("namespace")
        if ns is not None and body_ns not in (None, ns):
            return _status(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
        if ns is not None:
            namespace = self.store.get(("v1", "namespaces", None, ns))
            if namespace is None:
                return _status(404, "NotFound", f'namespaces "{ns}" not found')
            if (namespace.get("status") or {}).get("phase") == "Terminating":
                return _status(
                    403, "Forbidden", f"unable to create new content in namespace {ns} because it is being terminated"
                )
        if (gv, plural, ns, name) in self.store:
            return _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        obj = copy.deepcopy(body)
        if plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        return web.json_response(self._put(gv, plural, ns, obj), status=201)

    def _delete(self, gv: str, plural: str, ns: str | None, name: str) -> web.Response:
        obj = self.store.get((gv, plural, ns, name))
        if obj is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        if plural == "namespaces":
            obj["status"] = {"phase": "Terminating"}
            obj["metadata"].setdefault("deletionTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            obj["metadata"]["_deleted_at"] = time.monotonic()
            return web.json_response(obj)
        del self.store[(gv, plural, ns, name)]
        return web.json_response(obj)

    # ---- pod proxy ---------------------------------------------------------------------------

    def _agent_session(self, node: SimNode, port: int, scheme: str = "http") -> tuple[aiohttp.ClientSession, str]:
        """How the emulated API server reaches an agent: its unix socket (plain HTTP: the agent
        serves TLS on TCP only), else ``scheme`` to its node address, the certificate unchecked
        (as the API server's pod proxy and the kubelet's HTTPS probes do)."""
        if node.unix_socket is not None:
            session = self._unix_sessions.get(node.unix_socket)
            if session is None:
                session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(node.unix_socket)))
                self._unix_sessions[node.unix_socket] = session
            return session, "http://agent"
        assert self._agents is not None
        return self._agents, f"{scheme}://{node.address}:{port}"

    async def _proxy(self, request: web.Request, ns: str | None, target: str, rest: str) -> web.StreamResponse:
        scheme = "http"
        if target.startswith(("https:", "http:")):  # [scheme:]name:port, as the API server takes it
            scheme, _, target = target.partition(":")
        pod_name, _, port = target.partition(":")
        pod = self.store.get(("v1", "pods", ns, pod_name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{pod_name}" not found')
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName", ""))
        if node is None or not port.isdigit():
            return _status(
                503, "ServiceUnavailable", f"error trying to reach service: pod {pod_name} has no node or port"
            )
        session, base = self._agent_session(node, int(port), scheme)
        # like the API server: Authorization was consumed by authentication and is not forwarded
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("x-talbench-token", "content-type", "accept")
        }
        body = await request.read()
        try:
            async with session.request(
                request.method,
                base + (rest or "/"),
                params=request.query,
                data=body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
                ssl=False,
            ) as answer:
                payload = await answer.read()
                return web.Response(status=answer.status, body=payload, content_type=answer.content_type)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return _status(503, "ServiceUnavailable", f"error trying to reach service: {type(exc).__name__}")

    # ---- the simulated controllers -----------------------------------------------------------

    async def _simulate(self) -> None:
        while True:
            try:
                self._namespaces()
                self._daemonsets()
                await self._pod_status()
            except Exception as exc:  # the simulation must never die silently
                print(f"emulator simulation error: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self.tick)

    def _namespaces(self) -> None:
        for ns in self.objects("namespaces"):
            deleted_at = ns["metadata"].get("_deleted_at")
            if deleted_at is None:
                continue
            name = ns["metadata"]["name"]
            content = [key for key in self.store if key[2] == name]
            for key in content:
                del self.store[key]
            if not content and time.monotonic() - deleted_at >= self.namespace_grace:
                del self.store[("v1", "namespaces", None, name)]

    def _level(self, ns: str) -> str:
        if self.forced_pod_security:
            return self.forced_pod_security
        labels = (self.store.get(("v1", "namespaces", None, ns)) or {}).get("metadata", {}).get("labels") or {}
        return labels.get("pod-security.kubernetes.io/enforce", self.default_pod_security)

    def _daemonsets(self) -> None:
        daemonsets = {(ds["metadata"]["namespace"], ds["metadata"]["uid"]): ds for ds in self.objects("daemonsets")}
        for pod in self.objects("pods"):  # garbage collection of orphaned pods
            owner = next(iter(pod["metadata"].get("ownerReferences") or ()), None)
            if (
                owner
                and owner.get("kind") == "DaemonSet"
                and (pod["metadata"]["namespace"], owner["uid"]) not in daemonsets
            ):
                del self.store[("v1", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])]
        for (ns, uid), ds in daemonsets.items():
            template = ds["spec"]["template"]
            spec = template["spec"]
            tolerated = {(t.get("key"), t.get("effect")) for t in spec.get("tolerations") or ()}
            for node in self.nodes.values():
                labels = node.as_object()["metadata"]["labels"]
                if not all(labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
                    continue
                if any(
                    (t["key"], t["effect"]) not in tolerated and t["effect"] in ("NoSchedule", "NoExecute")
                    for t in node.taints
                ):
                    continue
                owned = [
                    p
                    for p in self.objects("pods", ns)
                    if (
                        pods.affinity_node(p["spec"]) == node.name
                        and any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or ())
                    )
                ]
                if owned:
                    continue
                pod_name = f"{ds['metadata']['name']}-{secrets.token_hex(3)[:5]}"
                problems = [] if self._level(ns) == "privileged" else baseline_violations(spec)
                if problems:
                    self._failed_create(ns, ds, pod_name, problems)
                    continue
                self._put(
                    "v1",
                    "pods",
                    ns,
                    {
                        "metadata": {
                            "name": pod_name,
                            "labels": dict(template["metadata"].get("labels") or {}),
                            "ownerReferences": [
                                {
                                    "apiVersion": "apps/v1",
                                    "kind": "DaemonSet",
                                    "name": ds["metadata"]["name"],
                                    "uid": uid,
                                    "controller": True,
                                }
                            ],
                        },
                        "spec": self._scheduled(spec, node),
                        "status": {
                            "phase": "Pending",
                            **(
                                {}
                                if node.failure == pods.UNSCHEDULABLE
                                else {"hostIP": node.address, "podIP": node.address}
                            ),
                            "conditions": [
                                pods.unschedulable_condition(len(self.nodes))
                                if node.failure == pods.UNSCHEDULABLE
                                else {"type": "PodScheduled", "status": "True"}
                            ],
                        },
                    },
                )

    @staticmethod
    def _scheduled(template_spec: Mapping[str, Any], node: SimNode) -> dict[str, Any]:
        """The pod's spec as the DaemonSet controller writes it (pinned by node affinity) and the
        scheduler binds it (nodeName), unless the node has no room for it."""
        spec = {**copy.deepcopy(dict(template_spec)), "affinity": pods.node_affinity(node.name)}
        if node.failure != pods.UNSCHEDULABLE:
            spec["nodeName"] = node.name
        return spec

    def _failed_create(self, ns: str, ds: Mapping[str, Any], pod_name: str, problems: list[str]) -> None:
        key = (ns, ds["metadata"]["name"])
        if time.monotonic() - self._rejected_at.get(key, 0.0) < 1.0:
            return
        self._rejected_at[key] = time.monotonic()
        level = self._level(ns)
        self._put(
            "v1",
            "events",
            ns,
            {
                "metadata": {"name": f"{ds['metadata']['name']}.{secrets.token_hex(8)}"},
                "involvedObject": {
                    "kind": "DaemonSet",
                    "namespace": ns,
                    "name": ds["metadata"]["name"],
                    "uid": ds["metadata"]["uid"],
                },
                "reason": "FailedCreate",
                "type": "Warning",
                "message": f'Error creating: pods "{pod_name}" is forbidden: violates PodSecurity "{level}:latest": {", ".join(problems)}',
                "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "source": {"component": "daemonset-controller"},
            },
        )

    async def _pod_status(self) -> None:
        """The kubelet, polling: every DaemonSet pod of its nodes on each tick."""
        live = set()
        for pod in self.objects("pods"):
            if self.kubelet.node_of(pod) is None or not any(
                o.get("kind") == "DaemonSet" for o in pod["metadata"].get("ownerReferences") or ()
            ):
                continue
            live.add(pod["metadata"]["uid"])
            await self.kubelet.sync(pod)
        await self.kubelet.forget(live)

    async def _healthy(self, node: SimNode, pod: Mapping[str, Any]) -> bool:
        probe = (pod["spec"]["containers"][0].get("readinessProbe") or {}).get("httpGet") or {}
        session, base = self._agent_session(node, int(probe.get("port", 0)), str(probe.get("scheme", "HTTP")).lower())
        try:
            async with session.get(
                base + probe.get("path", "/"), timeout=aiohttp.ClientTimeout(total=1), ssl=False
            ) as answer:
                return answer.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False
