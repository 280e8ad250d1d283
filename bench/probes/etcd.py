"""etcd probe, coordinator side: a scratch etcd cluster across the control planes, write load
from one of them, and the members torn down one at a time.

1. every control-plane agent starts one member (``etcd-member`` start) with its data on the
   node's data directory (the disk under test); the members form one cluster over the node
   network (N members for N control planes); every member's node then measures the round trip
   to the other members' peer listeners (``etcd-member`` peers), which sets the recommended
   heartbeat;
2. one control-plane agent (``load_node``, default the first) runs ``etcd-load`` against every
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
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Mapping, Sequence

from talbench.agents.etcdload.profiles import KEY_SIZE, PROFILES, VALUE_SIZE
from talbench.agents.probes.etcd_member import port_is_reserved
from talbench.bench.agent_client import JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.model import Measurement, Node, ResultKey
from talbench.bench.metric import Metric, NullProgress, Progress
from talbench.bench.probes.etcd_metrics import ETCD_METRICS
from talbench.bench.probes.settings import seconds, unknown_setting, whole_number
from talbench.bench.units import Dimension, UnitError, parse_quantity

PROBE = "etcd"
MEMBER_PROBE = "etcd-member"
LOAD_PROBE = "etcd-load"
CLUSTER = "cluster"
SCHEMA = 1
QUICK_DURATION = 10.0
DEFAULT_CLIENT_PORT = 12379  # clashes with nothing Talos or Kubernetes uses
DEFAULT_PEER_PORT = 12380
STOP_DEADLINE = 30.0
PEER_RTT_COUNT = 30  # HTTP round trips from every member to every peer, before the load
PEER_RTT_INTERVAL = 0.05
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class EtcdSettings:
    profile: str = "s"  # s, m, l, xl or custom
    rate: float = 150.0  # writes/s (open loop)
    clients: int = 50
    duration: float = 60.0
    mode: str = "open"  # "open": the profile's rate, judged; "ceiling": closed loop, the most it takes
    key_size: int = KEY_SIZE
    value_size: int = VALUE_SIZE
    client_port: int = DEFAULT_CLIENT_PORT
    peer_port: int = DEFAULT_PEER_PORT
    heartbeat: float = 0.1  # seconds, the scratch members' --heartbeat-interval (etcd and Talos default)
    election: float = 1.0  # seconds, --election-timeout
    workers: int = 0  # load-generator processes, 0: automatic
    load_node: str | None = None
    start_timeout: float = 30.0
    request_timeout: float = 5.0
    min_requests: int = 100  # fewer completed writes: invalid
    quick: bool = False

    def load_params(self, endpoints: list[str]) -> dict[str, Any]:
        return {
            "endpoints": endpoints,
            "mode": "open" if self.mode == "open" else "closed",
            "rate": self.rate,
            "clients": self.clients,
            "duration_s": self.duration,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "workers": self.workers,
            "request_timeout_s": self.request_timeout,
            "wait_leader_s": self.start_timeout,
        }

    @property
    def load_deadline(self) -> float:
        return self.start_timeout + 30.0 + self.duration + self.request_timeout + 90.0

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "mode": self.mode,
            "rate": self.rate,
            "clients": self.clients,
            "duration": self.duration,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "heartbeat_ms": round(self.heartbeat * 1000),
            "election_ms": round(self.election * 1000),
            "min_requests": self.min_requests,
            "quick": self.quick,
        }


# ---- settings -------------------------------------------------------------------------------

_KNOWN = {
    "profile", "rate", "clients", "duration", "mode", "key_size", "value_size", "client_port", "peer_port",
    "heartbeat_interval", "election_timeout", "workers", "load_node", "start_timeout", "request_timeout", "min_requests",
}


def _whole(raw: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    return whole_number(key, raw[key], lo, hi)


def _seconds(raw: Mapping[str, Any], key: str, lo: float, hi: float) -> float:
    return seconds(key, raw[key], lo, hi)


def parse_settings(raw: Mapping[str, Any], *, quick: bool) -> EtcdSettings:
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise unknown_setting(unknown[0], _KNOWN)
    values: dict[str, Any] = {}
    profile = raw.get("profile", "s")
    if profile not in (*PROFILES, "custom"):
        raise ScenarioError(f"profile must be one of {', '.join(PROFILES)} or custom, not {profile!r}")
    values["profile"] = profile
    if profile != "custom":
        values["rate"], values["clients"] = PROFILES[profile].rate, PROFILES[profile].clients
    elif "rate" not in raw or "clients" not in raw:
        raise ScenarioError("profile custom needs rate (e.g. 500/s) and clients")
    if "rate" in raw:
        try:
            values["rate"] = parse_quantity(raw["rate"], Dimension.RATE).value
        except UnitError as exc:
            raise ScenarioError(f"rate: {exc}") from exc
        if not 1 <= values["rate"] <= 100_000:
            raise ScenarioError(f"rate must lie between 1/s and 100000/s, not {raw['rate']}")
    if "clients" in raw:
        values["clients"] = _whole(raw, "clients", 1, 5000)
    mode = raw.get("mode", "open")
    if mode not in ("open", "ceiling"):
        raise ScenarioError(f"mode must be open (the profile's rate) or ceiling (closed loop), not {mode!r}")
    values["mode"] = mode
    for key, (lo, hi) in {"duration": (1.0, 600.0), "start_timeout": (5.0, 300.0), "request_timeout": (0.5, 60.0)}.items():
        if key in raw:
            values[key] = _seconds(raw, key, lo, hi)
    if "heartbeat_interval" in raw:
        values["heartbeat"] = _seconds(raw, "heartbeat_interval", 0.01, 5.0)
    if "election_timeout" in raw:
        values["election"] = _seconds(raw, "election_timeout", 0.05, 50.0)
    for key, (lo, hi) in {"key_size": (64, 4096), "value_size": (1, 1_048_576), "client_port": (1024, 65000),
                          "peer_port": (1024, 65000), "workers": (0, 8), "min_requests": (1, 10_000_000)}.items():
        if key in raw:
            values[key] = _whole(raw, key, lo, hi)
    if "load_node" in raw:
        if not isinstance(raw["load_node"], str) or not raw["load_node"]:
            raise ScenarioError(f"load_node must be a node name, not {raw['load_node']!r}")
        values["load_node"] = raw["load_node"]
    settings = EtcdSettings(**values)
    if settings.election < 5 * settings.heartbeat:
        raise ScenarioError("election_timeout must be at least 5x heartbeat_interval (etcd refuses less)")
    if settings.client_port == settings.peer_port:
        raise ScenarioError("client_port and peer_port must differ")
    if quick:
        settings = replace(settings, duration=min(settings.duration, QUICK_DURATION), quick=True)
    return settings


# ---- the driver -----------------------------------------------------------------------------


def member_names(nodes: Sequence[Node]) -> dict[str, str]:
    """node name -> etcd member name (the node name when etcd accepts it)."""
    return {node.name: node.name if _MEMBER_NAME.match(node.name) else f"member-{i + 1}" for i, node in enumerate(nodes)}


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


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def _failed(keys: frozenset[ResultKey], reason: str, outcome: JobOutcome | None = None) -> list[Measurement]:
    return [
        Measurement(key, False, error=reason, error_kind=outcome.error_kind if outcome else None,
                    started=outcome.started if outcome else None, ended=outcome.ended if outcome else None)
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
    peer_urls = {names[n.name]: _url(n.address, ports[n.name][1]) for n in members}
    client_urls = {n.name: _url(n.address, ports[n.name][0]) for n in members}

    async def start(node: Node) -> JobOutcome:
        params = {
            "action": "start",
            "name": names[node.name],
            "host": node.address,
            "client_port": ports[node.name][0],
            "peer_port": ports[node.name][1],
            "initial_cluster": peer_urls,
            "cluster_token": fleet.run_id,
            "heartbeat_ms": round(settings.heartbeat * 1000),
            "election_ms": round(settings.election * 1000),
            "start_timeout_s": settings.start_timeout,
        }
        return await fleet.agents[node.name].run_job(MEMBER_PROBE, params, fleet.run_id, deadline=settings.start_timeout + 30.0)

    teardown: dict[str, Any] = {}
    try:
        progress.update(PROBE, note=f"starting {len(members)} etcd members")
        outcomes = await asyncio.gather(*(start(node) for node in members))
        yield ScratchCluster(tuple(members), names, client_urls, peer_urls, dict(zip((n.name for n in members), outcomes)), teardown)
    finally:
        for node in sorted(members, key=lambda n: n.name):
            progress.update(PROBE, note=f"stopping member {names[node.name]}")
            outcome = await fleet.agents[node.name].run_job(
                MEMBER_PROBE, {"action": "stop", "name": names[node.name]}, fleet.run_id, deadline=STOP_DEADLINE
            )
            teardown[node.name] = {"ok": outcome.ok, "error": outcome.error, **(dict(outcome.result) if outcome.ok else {})}


async def measure_peer_rtt(fleet: Fleet, cluster: ScratchCluster) -> dict[str, Any]:
    """member -> peer member -> raw HTTP round trips from that member's node to the peer listener."""
    names = cluster.names

    async def one(node: Node) -> JobOutcome:
        me = names[node.name]
        params = {"action": "peers", "name": me, "peers": {m: u for m, u in cluster.peer_urls.items() if m != me},
                  "count": PEER_RTT_COUNT, "interval_s": PEER_RTT_INTERVAL}
        return await fleet.agents[node.name].run_job(MEMBER_PROBE, params, fleet.run_id, deadline=PEER_RTT_COUNT * (PEER_RTT_INTERVAL + 2.0) + 30.0)

    outcomes = await asyncio.gather(*(one(node) for node in cluster.members))
    return {names[n.name]: (dict(o.result.get("peers") or {}) if o.ok else {"error": o.error}) for n, o in zip(cluster.members, outcomes)}


def control_planes(fleet: Fleet) -> list[Node]:
    return sorted((node for node in fleet.nodes if node.is_control_plane), key=lambda node: node.name)


class EtcdDriver:
    name = PROBE

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> EtcdSettings:
        return parse_settings(raw, quick=quick)

    def metrics(self) -> Sequence[Metric]:
        return ETCD_METRICS

    async def run(self, keys: frozenset[ResultKey], fleet: Fleet, settings: EtcdSettings, progress: Progress) -> list[Measurement]:
        members = control_planes(fleet)
        if not members:
            return _failed(keys, "no control-plane node: nowhere to run the scratch etcd cluster")
        absent = [node.name for node in members if node.name not in fleet.agents or node.name in fleet.unready]
        if absent:
            return _failed(keys, f"no ready agent on control plane(s) {', '.join(absent)}: the scratch cluster needs every control plane")
        load_node = settings.load_node or members[0].name
        if load_node not in {node.name for node in members}:
            return _failed(keys, f"load_node {load_node} is not a control plane of this cluster")
        total = 3  # members started, load done, members stopped
        progress.update(PROBE, done=0, total=total, note=f"starting {len(members)} etcd members")
        async with scratch_cluster(fleet, members, settings, progress) as cluster:
            if cluster.failed:
                first = next(iter(cluster.failed.values()))
                reasons = "; ".join(f"{n}: {o.error}" for n, o in cluster.failed.items())
                failure = _failed(keys, f"etcd member(s) did not start ({reasons})", first)
            else:
                progress.update(PROBE, done=1, total=total, note="measuring member round trips")
                peer_rtt = await measure_peer_rtt(fleet, cluster)
                note = f"{settings.profile} profile, {settings.rate:g} writes/s" if settings.mode == "open" else "closed-loop ceiling"
                progress.update(PROBE, done=1, total=total, note=f"load from {load_node}: {note}, {settings.duration:g}s")
                load = await fleet.agents[load_node].run_job(
                    LOAD_PROBE, settings.load_params([cluster.client_urls[n.name] for n in members]), fleet.run_id,
                    deadline=settings.load_deadline,
                )
                progress.update(PROBE, done=2, total=total, note="load done")
                failure = None if load.ok else _failed(keys, f"etcd load from {load_node} failed: {load.error}", load)
        progress.update(PROBE, done=total, total=total, note="members stopped")
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
        members, names, client_urls, starts, teardown = cluster.members, cluster.names, cluster.client_urls, cluster.starts, cluster.teardown
        result = dict(load.result)
        metrics = result.pop("metrics", {}) or {}
        cluster_data = {
            "schema": SCHEMA,
            "settings": settings.describe(),
            "load_node": load_node,
            "members": {
                n.name: {"member": names[n.name], "client_url": client_urls[n.name], "ready_after_s": starts[n.name].result.get("ready_after_s")}
                for n in members
            },
            "result": result,
            "metrics": metrics,  # client URL -> {"before", "after"} snapshots of that member's /metrics
            "peer_rtt": dict(peer_rtt),  # member -> peer member -> {"samples_ns", "failed", "errors"}
            "teardown": dict(teardown),
        }
        out: list[Measurement] = []
        for key in sorted(keys):
            if key.node == CLUSTER:
                out.append(Measurement(key, True, data=cluster_data, started=load.started, ended=load.ended, resources=load.resources))
            elif key.node in client_urls:
                url = client_urls[key.node]
                data = {"schema": SCHEMA, "member": names[key.node], "client_url": url, "metrics": metrics.get(url) or {},
                        "load_ok": result.get("load", {}).get("requests", {}).get("ok")}
                out.append(Measurement(key, True, data=data, started=load.started, ended=load.ended))
            else:
                out.append(Measurement(key, False, error=f"{key.node} is not a control plane: it runs no etcd member"))
        return out



DRIVER = EtcdDriver()
