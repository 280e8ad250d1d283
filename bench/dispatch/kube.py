"""The Kubernetes dispatcher (``--target kube``): a DaemonSet of agents, one per eligible node.

From a laptop the coordinator reaches the agents through the API server's pod proxy
(``pods/NAME:PORT/proxy/``); inside the cluster (CronJob mode) directly at their node IPs.
Measurements always run agent to agent at node IPs, never through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from talbench.agents import wire
from talbench.bench.agent_client import AgentClient, AgentError, RequestGate
from talbench.bench.agent_tls import client_context, make_agent_tls
from talbench.bench.dispatch.base import Fleet, LeftBehind, Leftovers
from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeApiError, KubeClient, connect, path
from talbench.bench.kube.config import ApiTarget, auth_header, resolve_target
from talbench.bench.kube.cronjob import DEFAULT_KEEP, keep_summary, kept_summaries
from talbench.bench.kube.deploy import clean, create_agents, matches, read_facts, remove_agents, wait_for_agents
from talbench.bench.kube.image import ImageRef, require_image
from talbench.bench.kube.lease import deadline_kept
from talbench.bench.kube.readiness import no_agent_ready, no_pod_reason, ready_timeout
from talbench.bench.model import Node
from talbench.bench.report.history import Kept

ACCESS_MODES = ("auto", "proxy", "direct")


@dataclass(frozen=True)
class KubeOptions:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # an existing namespace to use; None: the run creates its own
    image: str | None = None  # required to deploy (kube.image: no default image)
    image_pull_secrets: tuple[str, ...] = ()  # Secrets in ``namespace`` (needs an existing namespace)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    agent_port: int = wire.DEFAULT_PORT
    access: str = "auto"  # proxy (from outside), direct (node IPs, in-cluster), auto
    ready_timeout: float = 180.0
    delete_timeout: float = 120.0  # how long teardown (and clean) waits for the run's objects to go
    poll_interval: float = 1.0
    request_timeout: float = 15.0
    image_pull_policy: str | None = None  # None: by the reference (ImageRef.pull_policy)


class KubeDispatcher:
    name = "kube"

    def __init__(self, options: KubeOptions | None = None, *, target: ApiTarget | None = None) -> None:
        self.options = options or KubeOptions()
        if self.options.access not in ACCESS_MODES:
            raise UsageError(f"agent access {self.options.access!r}: one of {', '.join(ACCESS_MODES)}")
        self._target = target  # tests hand one in; otherwise kubeconfig / in-cluster precedence

    def image(self) -> ImageRef:
        """The image to deploy, checked (UsageError: none given, malformed, or pull secrets
        without a namespace to find them in)."""
        ref = require_image(self.options.image, m.tool_version())
        if self.options.image_pull_secrets and self.options.namespace is None:
            raise UsageError(
                "--image-pull-secret needs --namespace: a pull secret is read from the namespace of the pods "
                "that use it, and a run's own namespace starts empty",
                hint="create the secret in an existing namespace (privileged Pod Security labels) and pass it "
                "with --namespace",
            )
        return ref

    def target(self) -> ApiTarget:
        if self._target is None:
            self._target = resolve_target(self.options.kubeconfig, self.options.context)
        return self._target

    def _direct(self, target: ApiTarget) -> bool:
        return self.options.access == "direct" or (self.options.access == "auto" and target.in_cluster)

    async def discover(self) -> tuple[Node, ...]:
        """The cluster's nodes that match --node-selector: one read of the API, nothing created."""
        async with connect(self.target(), timeout=self.options.request_timeout) as kube:
            facts = await read_facts(kube)
        return tuple(n.as_node() for n in facts.nodes if matches(n.labels, self.options.node_selector))

    @contextlib.asynccontextmanager
    async def deploy(
        self, run_id: str, *, agents_for: Callable[[Sequence[Node]], frozenset[str]] | None = None
    ) -> AsyncIterator[Fleet]:
        opts = self.options
        image = self.image()  # before anything touches the cluster
        target = self.target()
        async with connect(target, timeout=opts.request_timeout) as kube:
            facts = await read_facts(kube)
            eligible = [n for n in facts.nodes if matches(n.labels, opts.node_selector)]
            if not eligible:
                shown = ",".join(f"{k}={v}" for k, v in opts.node_selector.items())
                raise CouldNotRun(
                    f"no node of the cluster matches --node-selector {shown}" if shown else "the cluster lists no node"
                )
            wanted = agents_for(tuple(n.as_node() for n in eligible)) if agents_for else None
            needed = [n for n in eligible if wanted is None or n.name in wanted]  # agents only where checks need
            tls = make_agent_tls(run_id)  # every run's agents serve HTTPS with the run's own CA
            spec = m.AgentSpec(
                run_id=run_id,
                namespace=opts.namespace or m.run_namespace(run_id),
                image=str(image),
                token=secrets.token_urlsafe(32),
                port=opts.agent_port,
                node_selector=dict(opts.node_selector),
                node_names=tuple(sorted(n.name for n in needed)) if len(needed) < len(eligible) else (),
                own_namespace=opts.namespace is None,
                image_pull_policy=opts.image_pull_policy or image.pull_policy,
                image_pull_secrets=opts.image_pull_secrets,
                tls=tls,
            )
            direct = self._direct(target)
            created: list[dict[str, Any]] = []
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_exit(self._teardown_on_exit(kube, spec, created))
                deadline: dict[str, Any] = {}  # the run's deadline while it runs (kube.lease), in its metadata
                if needed:
                    await create_agents(kube, spec, created)
                    await stack.enter_async_context(deadline_kept(kube, spec, deadline))
                # nodes no agent pod can come to: reported at once, not waited for
                hopeless = {n.name: reason for n in needed if (reason := no_pod_reason(n))}
                expected = [n for n in needed if n.name not in hopeless]
                readiness = await wait_for_agents(
                    kube,
                    spec,
                    expected,
                    timeout=ready_timeout(opts.ready_timeout, len(expected)),
                    poll_interval=opts.poll_interval,
                )
                session = kube.session
                if direct:  # https to the nodes, checked against the run's CA alone (bench/agent_tls.py)
                    connector = aiohttp.TCPConnector(ssl=client_context(tls))
                    session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
                agents: dict[str, AgentClient] = {}
                gate = RequestGate()  # every agent request of the run: at most GATE_LIMIT at once
                unready = {**hopeless, **readiness.unready}
                for node in needed:
                    pod = readiness.pods.get(node.name)
                    if pod is None:
                        continue
                    agents[node.name] = self._client(kube, session, spec, node.name, node.address, pod, direct, gate)
                unready.update(
                    await _unreachable(agents, "directly" if direct else "through the API server's pod proxy")
                )
                for name in unready:
                    agents.pop(name, None)
                if needed and not agents:  # nothing can be measured: the run could not happen
                    raise no_agent_ready(needed, unready, spec)
                yield Fleet(
                    run_id=run_id,
                    nodes=tuple(n.as_node() for n in eligible),
                    agents=agents,
                    unready=unready,
                    target="kube",
                    agent_port=opts.agent_port,
                    teardown=self._teardown_note(spec),
                    metadata={
                        "kubernetes": facts.as_dict(),
                        "versions": facts.versions(),
                        "kube": {
                            "server": target.server,
                            "context": target.context,
                            "namespace": spec.namespace,
                            "image": spec.image,
                            "agent_access": "direct" if direct else "pod-proxy",
                            "node_selector": dict(opts.node_selector),
                            "agents_ready_after_s": round(readiness.waited, 1),
                            "agents_on": f"{len(needed)} of {len(eligible)} nodes",
                            "agent_tls": "https, the run's own CA",
                            "deadline": deadline,
                        },
                    },
                )

    def _client(
        self,
        kube: KubeClient,
        session: aiohttp.ClientSession,
        spec: m.AgentSpec,
        node: str,
        address: str,
        pod: str,
        direct: bool,
        gate: RequestGate,
    ) -> AgentClient:
        timeout = self.options.request_timeout
        tls = spec.tls
        assert tls is not None  # deploy gives every run's agents their TLS
        if direct:  # the session's connector holds the run's CA; the certificate names no node
            host = f"[{address}]" if ":" in address else address
            return AgentClient(
                node,
                session,
                f"https://{host}:{spec.port}",
                spec.token,
                request_timeout=timeout,
                gate=gate,
                tls_server_name=tls.server_name,
            )
        # the API server dials the agent over https (it checks no pod's certificate)
        base = kube.url(path("v1", "pods", spec.namespace, f"https:{pod}:{spec.port}", "proxy"))
        # The API server takes Authorization for itself (and drops it); the agent token rides in
        # X-Talbench-Token.  Without a kube token (client certificates) send an empty one, so
        # the agent token never reaches the API server's authenticators.
        headers = {"Authorization": auth_header(kube.target) or ""}
        return AgentClient(node, session, base, spec.token, request_timeout=timeout, extra_headers=headers, gate=gate)

    def _teardown_note(self, spec: m.AgentSpec) -> str:
        bound = f"(up to {self.options.delete_timeout:g}s)"
        if spec.own_namespace:
            return (
                f"removing the run's namespace {spec.namespace}: waiting for its agent pods to stop and the "
                f"namespace controller to delete it {bound}"
            )
        return f"removing the run's agents from namespace {spec.namespace}: waiting for their pods to stop {bound}"

    def clean_command(self, run_id: str) -> str:
        """The ``talbench clean`` command that removes what run ``run_id`` left, as the user
        runs it (the same kubeconfig, context and namespace as the run)."""
        argv = ["talbench", "clean", "--run-id", run_id]
        for flag, value in (
            ("--kubeconfig", self.options.kubeconfig),
            ("--context", self.options.context),
            ("--namespace", self.options.namespace),
        ):
            if value:
                argv += [flag, value]
        return shlex.join(argv)

    def _teardown_on_exit(
        self, kube: KubeClient, spec: m.AgentSpec, created: list[dict[str, Any]]
    ) -> Callable[[type[BaseException] | None, BaseException | None, TracebackType | None], Awaitable[bool]]:
        async def on_exit(
            exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> bool:
            try:
                left = await self._teardown(kube, spec, created)
            except (KubeApiError, CouldNotRun) as error:  # refused, or the API server went away
                left = [f"the run's objects in namespace {spec.namespace} (removing them failed: {error})"]
            if left:
                leftovers = Leftovers(
                    spec.run_id, tuple(left), self.clean_command(spec.run_id), self.options.delete_timeout
                )
                if exc_type is None:  # the run finished: its results stand, what is left is reported after them
                    raise LeftBehind(leftovers)
                if isinstance(exc, BaseException):
                    exc.add_note(f"also: {leftovers.line()}")
            return False

        return on_exit

    async def _teardown(self, kube: KubeClient, spec: m.AgentSpec, created: list[dict[str, Any]]) -> list[str]:
        """Remove the run's objects and wait until gone (bounded), even when the run is being
        cancelled; returns what is still there."""
        task = asyncio.ensure_future(
            remove_agents(
                kube, spec, created, timeout=self.options.delete_timeout, poll_interval=self.options.poll_interval
            )
        )
        while True:
            try:
                left = await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.done():
                    raise
                continue  # a second Ctrl-C: the removal is bounded, let it finish
        return left

    async def clean(self, *, run_id: str | None = None) -> list[str]:
        """``talbench clean``: remove what crashed runs left (their namespaces, or their objects
        in ``--namespace``).  Returns what was removed."""
        async with connect(self.target(), timeout=self.options.request_timeout) as kube:
            return await clean(
                kube,
                namespace=self.options.namespace,
                run_id=run_id,
                timeout=self.options.delete_timeout,
                poll_interval=self.options.poll_interval,
            )

    async def keep_summary(self, run_id: str, summary: Mapping[str, Any], *, keep: int = DEFAULT_KEEP) -> list[str]:
        """``run --keep-results N``: store the run's JSON summary as a ConfigMap in the run's
        namespace (``--namespace``, else the context's or the pod's own namespace) and prune the
        oldest beyond ``keep``; returns the ConfigMaps deleted."""
        target = self.target()
        namespace = self.options.namespace or target.namespace
        if not namespace:
            raise UsageError("--keep-results needs --namespace (where the results are kept)")
        async with connect(target, timeout=self.options.request_timeout) as kube:
            return await keep_summary(kube, namespace, run_id, summary, keep=keep)

    async def kept_summaries(self) -> tuple[Kept, ...]:
        """The summaries earlier ``--keep-results`` runs kept in the namespace ``keep_summary``
        uses, newest first (a run compares itself with the previous one, bench/report/history.py)."""
        target = self.target()
        namespace = self.options.namespace or target.namespace
        if not namespace:
            raise UsageError("--keep-results needs --namespace (where the results are kept)")
        async with connect(target, timeout=self.options.request_timeout) as kube:
            try:
                return await kept_summaries(kube, namespace)
            except KubeApiError as exc:
                raise CouldNotRun(f"cannot list the results kept in namespace {namespace}: {exc}") from exc


async def _unreachable(agents: Mapping[str, AgentClient], how: str) -> dict[str, str]:
    """Ready pods whose agent the coordinator cannot reach: name -> reason."""

    async def one(name: str, client: AgentClient) -> tuple[str, str | None]:
        try:
            await client.health()
            return name, None
        except AgentError as exc:
            return name, f"agent pod ready but not reachable {how}: {exc}"

    results = await asyncio.gather(*(one(name, client) for name, client in agents.items()))
    return {name: reason for name, reason in results if reason}
