"""etcd probe, coordinator side: a scratch etcd cluster across the control planes, write load
from one of them, and the members torn down one at a time.

1. every control-plane agent starts one member (``etcd.member`` start) with its data on the
   node's data directory (the disk under test); the members form one cluster over the node
   network (N members for N control planes); every member's node then measures the round trip
   to the other members' peer listeners (``etcd.member`` peers), which sets the recommended
   heartbeat;
2. one control-plane agent (``load_node``, default the first) runs ``etcd.load`` against every
   member's client URL: the profile's rate open-loop (or the closed-loop ceiling);
3. members stop one at a time (bounded; the agents also release them on DELETE /v1/runs).

Results: ResultKey("etcd", "cluster") carries the load and cluster figures; ResultKey("etcd",
<node>) carries that member's own /metrics (WAL fsync, backend commit).  A member that does not
start leaves the cluster incomplete: every key comes back failed, with the reason (no_data).

Which profile: ``s`` (150 writes/s, 50 clients) is the control-plane scenario's default and
matches a small cluster; larger clusters should run ``m`` (1000/s, 200 clients: roughly a
cluster of a few hundred nodes with steady churn), and ``l``/``xl`` are capacity tests for
clusters in the thousands of nodes or with heavy controller/CRD traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from talbench.agents.params import Params, wire
from talbench.agents.probes.etcd import probe as etcd_agent
from talbench.agents.probes.etcd.member import url_host
from talbench.agents.probes.etcd.settings import (
    MEMBER_NAME,
    EtcdSettings,
    LoadShape,
    MemberTiming,
    Startup,
    port_is_reserved,
)
from talbench.bench.agent_client import JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, NullProgress, ProbeCost, Progress
from talbench.bench.model import CLUSTER_NODE, Measurement, Node, ResultKey
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.etcd.metrics import ETCD_METRICS

NAME = etcd_agent.PROBE.name
MEMBER_JOB = etcd_agent.MEMBER.name
LOAD_JOB = etcd_agent.LOAD.name
SCHEMA = 1
QUICK_DURATION = 10.0
STOP_DEADLINE = 30.0
PEER_RTT_COUNT = 30  # HTTP round trips from every member to every peer, before the load
PEER_RTT_INTERVAL = 0.05


def _part(settings: EtcdSettings, model: type[Params]) -> dict[str, Any]:
    """The fields of ``settings`` that a job model takes over from the scenario (as sent)."""
    return {name: value for name, value in wire(settings).items() if name in model.model_fields}


def load_params(settings: EtcdSettings, endpoints: list[str]) -> dict[str, Any]:
    """The ``etcd.load`` job: the scenario's load, the members' client URLs, and as long to wait
    for a leader as the members had to start."""
    return {**_part(settings, LoadShape), **_part(settings, Startup), "endpoints": endpoints}


def load_deadline(settings: EtcdSettings) -> float:
    return settings.start_timeout + 30.0 + settings.duration + settings.request_timeout + 90.0


def settings_record(settings: EtcdSettings) -> dict[str, Any]:
    """The settings as run.json keeps them with the cluster's result."""
    return {
        "profile": settings.profile,
        "mode": settings.mode,
        "rate": settings.rate,
        "clients": settings.clients,
        "duration": settings.duration,
        "key_size": settings.key_size,
        "value_size": settings.value_size,
        "heartbeat_ms": round(settings.heartbeat_interval * 1000),
        "election_ms": round(settings.election_timeout * 1000),
        "min_requests": settings.min_requests,
        "quick": settings.quick,
    }


# ---- the driver -----------------------------------------------------------------------------


def member_names(nodes: Sequence[Node]) -> dict[str, str]:
    """node name -> etcd member name (the node name when etcd accepts it)."""
    return {
        node.name: node.name if re.fullmatch(MEMBER_NAME, node.name) else f"member-{i + 1}"
        for i, node in enumerate(nodes)
    }


def member_ports(nodes: Sequence[Node], settings: EtcdSettings) -> dict[str, tuple[int, int]]:
    """node name -> (client port, peer port).  Nodes sharing an address (all on one host) get
    distinct ports; otherwise every member uses the same pair."""
    shared = len({node.address for node in nodes}) < len(nodes)
    ports: dict[str, tuple[int, int]] = {}
    step = 0
    for node in nodes:
        while True:
            client = settings.client_port + (2 * step if shared else 0)
            peer = settings.peer_port + (2 * step if shared else 0)
            step += 1
            if not port_is_reserved(client) and not port_is_reserved(peer) and client <= 65535 and peer <= 65535:
                break
            if step > 1000:
                raise ScenarioError("no free port pair for the members")
        ports[node.name] = (client, peer)
    return ports


def _member_url(address: str, port: int) -> str:
    return f"http://{url_host(address)}:{port}"


def _failed(keys: frozenset[ResultKey], reason: str, outcome: JobOutcome | None = None) -> list[Measurement]:
    return [
        Measurement(
            key,
            False,
            error=reason,
            error_kind=outcome.error_kind if outcome else None,
            started=outcome.started if outcome else None,
            ended=outcome.ended if outcome else None,
        )
        for key in sorted(keys)
    ]


@dataclass(frozen=True)
class ScratchCluster:
    """Members of a scratch cluster as started: node name -> member name, client URL, start
    outcome; ``teardown`` is filled in as the members stop."""

    members: tuple[Node, ...]
    names: Mapping[str, str]  # node -> member
    client_urls: Mapping[str, str]  # node -> client URL
    peer_urls: Mapping[str, str]  # member -> peer URL
    starts: Mapping[str, JobOutcome]  # node -> start job
    teardown: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def failed(self) -> dict[str, JobOutcome]:
        return {name: outcome for name, outcome in sorted(self.starts.items()) if not outcome.ok}


@contextlib.asynccontextmanager
async def scratch_cluster(
    fleet: Fleet, members: Sequence[Node], settings: EtcdSettings, progress: Progress | None = None
) -> AsyncIterator[ScratchCluster]:
    """Start one member per node in ``members`` (all at once: they need each other for a
    leader), yield, then stop them one at a time (stopping all at once can stall leadership
    transfer for minutes), each bounded.  Members that failed to start are stopped too (a job
    that timed out on our side may still be starting on the agent)."""
    progress = progress or NullProgress()
    names = member_names(members)
    ports = member_ports(members, settings)
    peer_urls = {names[n.name]: _member_url(n.address, ports[n.name][1]) for n in members}
    client_urls = {n.name: _member_url(n.address, ports[n.name][0]) for n in members}

    async def start(node: Node) -> JobOutcome:
        params = {
            **_part(settings, MemberTiming),
            **_part(settings, Startup),
            "action": "start",
            "name": names[node.name],
            "host": node.address,
            "client_port": ports[node.name][0],
            "peer_port": ports[node.name][1],
            "initial_cluster": peer_urls,
            "cluster_token": fleet.run_id,
        }
        return await fleet.agents[node.name].run_job(
            MEMBER_JOB, params, fleet.run_id, deadline=settings.start_timeout + 30.0
        )

    teardown: dict[str, Any] = {}
    try:
        progress.update(NAME, note=f"starting {len(members)} etcd members")
        outcomes = await asyncio.gather(*(start(node) for node in members))
        yield ScratchCluster(
            tuple(members),
            names,
            client_urls,
            peer_urls,
            dict(zip((n.name for n in members), outcomes, strict=True)),
            teardown,
        )
    finally:
        for node in sorted(members, key=lambda n: n.name):
            progress.update(NAME, note=f"stopping member {names[node.name]}")
            outcome = await fleet.agents[node.name].run_job(
                MEMBER_JOB, {"action": "stop", "name": names[node.name]}, fleet.run_id, deadline=STOP_DEADLINE
            )
            teardown[node.name] = {
                "ok": outcome.ok,
                "error": outcome.error,
                **(dict(outcome.result) if outcome.ok else {}),
            }


async def measure_peer_rtt(fleet: Fleet, cluster: ScratchCluster) -> dict[str, Any]:
    """member -> peer member -> raw HTTP round trips from that member's node to the peer listener."""
    names = cluster.names

    async def one(node: Node) -> JobOutcome:
        me = names[node.name]
        params = {
            "action": "peers",
            "name": me,
            "peers": {m: u for m, u in cluster.peer_urls.items() if m != me},
            "count": PEER_RTT_COUNT,
            "interval": PEER_RTT_INTERVAL,
        }
        return await fleet.agents[node.name].run_job(
            MEMBER_JOB, params, fleet.run_id, deadline=PEER_RTT_COUNT * (PEER_RTT_INTERVAL + 2.0) + 30.0
        )

    outcomes = await asyncio.gather(*(one(node) for node in cluster.members))
    return {
        names[n.name]: (dict(o.result.get("peers") or {}) if o.ok else {"error": o.error})
        for n, o in zip(cluster.members, outcomes, strict=True)
    }


def control_planes(fleet: Fleet) -> list[Node]:
    return sorted((node for node in fleet.nodes if node.is_control_plane), key=lambda node: node.name)


class EtcdDriver(DeclaredDriver[EtcdSettings]):
    name = NAME
    declaration = etcd_agent.PROBE
    settings_model = EtcdSettings

    def quicken(self, settings: EtcdSettings) -> EtcdSettings:
        # Demos and tests: at most 10 s of load (the members still start and stop in full).
        return settings.shortened(QUICK_DURATION)

    def metrics(self) -> Sequence[Metric]:
        return ETCD_METRICS

    def agent_nodes(self, keys: frozenset[ResultKey], nodes: Sequence[Node]) -> frozenset[str]:
        """The scratch cluster's members: every control plane (its figures are the cluster's)."""
        return frozenset(node.name for node in nodes if node.is_control_plane) if keys else frozenset()

    def cost(self, keys: frozenset[ResultKey], settings: EtcdSettings, nodes: Sequence[Node]) -> ProbeCost:
        """A scratch member on every control plane; the load for ``duration``, at most the load
        job's deadline with the members' start and stop."""
        return ProbeCost(
            self.name,
            duration_s=load_deadline(settings),
            note=f"a scratch member per control plane, {settings.profile} profile: "
            f"{settings.rate:g} writes/s for {settings.duration:g} s",
        )

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: EtcdSettings, progress: Progress
    ) -> list[Measurement]:
        members = control_planes(fleet)
        if not members:
            return _failed(keys, "no control-plane node: nowhere to run the scratch etcd cluster")
        absent = [node.name for node in members if node.name not in fleet.agents or node.name in fleet.unready]
        if absent:
            return _failed(
                keys,
                f"no ready agent on control plane(s) {', '.join(absent)}: the scratch cluster needs every control plane",
            )
        load_node = settings.load_node or members[0].name
        if load_node not in {node.name for node in members}:
            return _failed(keys, f"load_node {load_node} is not a control plane of this cluster")
        total = 3  # members started, load done, members stopped
        progress.update(NAME, done=0, total=total, note=f"starting {len(members)} etcd members")
        failure: list[Measurement] | None = None
        async with scratch_cluster(fleet, members, settings, progress) as cluster:
            if cluster.failed:
                first = next(iter(cluster.failed.values()))
                reasons = "; ".join(f"{n}: {o.error}" for n, o in cluster.failed.items())
                failure = _failed(keys, f"etcd member(s) did not start ({reasons})", first)
            else:
                progress.update(NAME, done=1, total=total, note="measuring member round trips")
                peer_rtt = await measure_peer_rtt(fleet, cluster)
                note = (
                    f"{settings.profile} profile, {settings.rate:g} writes/s"
                    if settings.mode == "open"
                    else "closed-loop ceiling"
                )
                progress.update(
                    NAME, done=1, total=total, note=f"load from {load_node}: {note}, {settings.duration:g}s"
                )
                load = await fleet.agents[load_node].run_job(
                    LOAD_JOB,
                    load_params(settings, [cluster.client_urls[n.name] for n in members]),
                    fleet.run_id,
                    deadline=load_deadline(settings),
                )
                progress.update(NAME, done=2, total=total, note="load done")
                failure = None if load.ok else _failed(keys, f"etcd load from {load_node} failed: {load.error}", load)
        progress.update(NAME, done=total, total=total, note="members stopped")
        if failure is not None:
            return failure
        return self._measurements(keys, settings, cluster, load, load_node, peer_rtt)

    def _measurements(
        self,
        keys: frozenset[ResultKey],
        settings: EtcdSettings,
        cluster: ScratchCluster,
        load: JobOutcome,
        load_node: str,
        peer_rtt: Mapping[str, Any],
    ) -> list[Measurement]:
        members, names, client_urls, starts, teardown = (
            cluster.members,
            cluster.names,
            cluster.client_urls,
            cluster.starts,
            cluster.teardown,
        )
        result = dict(load.result)
        metrics = result.pop("metrics", {}) or {}
        cluster_data = {
            "schema": SCHEMA,
            "settings": settings_record(settings),
            "load_node": load_node,
            "members": {
                n.name: {
                    "member": names[n.name],
                    "client_url": client_urls[n.name],
                    "ready_after_s": starts[n.name].result.get("ready_after_s"),
                    "version": starts[n.name].result.get("version"),  # what the member runs (/version)
                }
                for n in members
            },
            "result": result,
            "metrics": metrics,  # client URL -> {"before", "after"} snapshots of that member's /metrics
            "peer_rtt": dict(peer_rtt),  # member -> peer member -> {"samples_ns", "failed", "errors"}
            "teardown": dict(teardown),
        }
        out: list[Measurement] = []
        for key in sorted(keys):
            if key.node == CLUSTER_NODE:
                out.append(
                    Measurement(
                        key, True, data=cluster_data, started=load.started, ended=load.ended, resources=load.resources
                    )
                )
            elif key.node in client_urls:
                url = client_urls[key.node]
                data = {
                    "schema": SCHEMA,
                    "member": names[key.node],
                    "client_url": url,
                    "metrics": metrics.get(url) or {},
                    "load_ok": result.get("load", {}).get("requests", {}).get("ok"),
                }
                out.append(Measurement(key, True, data=data, started=load.started, ended=load.ended))
            else:
                out.append(Measurement(key, False, error=f"{key.node} is not a control plane: it runs no etcd member"))
        return out


DRIVER = EtcdDriver()
