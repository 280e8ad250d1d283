"""WireGuard / KubeSpan overhead, coordinator side.

For each measured pair (all control-plane pairs; a bounded, deterministic sample of the other
pairs) the client node ``a`` (first of the sorted pair) and server node ``b``:

1. set up a WireGuard test tunnel just for this pair and run: both agents create their link
   (``wg_tunnel up``, fresh keys, a port other than 51820, addresses from 198.18.0.0/15, the
   RFC 2544 benchmarking range) and return their public keys; then each is given the other as
   peer (``wg_tunnel peer``);
2. measure RTT over the node path (b's address, the agent's echo responder) and through the
   tunnel (b's tunnel address, the echo responder the tunnel brought up), interleaved in one
   RTT job so both paths see the same moment;
3. measure TCP throughput with iperf3 over the node path, then through the tunnel, and read
   WireGuard's byte counters to prove the tunnel figures went through the tunnel;
4. tear the tunnel down (always, also on cancellation; the agents' cleanup registries are the
   second line).

Pairs are measured one after the other: throughput tests on shared links and CPUs disturb each
other.  Which path each figure took is recorded from the kernel's route (``ip route get``): on a
node with KubeSpan the node path runs through the ``kubespan`` link, and the test tunnel's own
UDP bypasses KubeSpan (mark 0x20).

Result keys: ``wireguard:a->b`` per pair (a < b), ``wireguard:node`` (KubeSpan on that node),
``wireguard:cluster`` (KubeSpan on every node, for the cluster-shape rule).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from talbench.agents import wire
from talbench.bench.agent_client import AgentClient, JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.model import STORAGE_LABEL, Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.metric import Metric, Progress
from talbench.bench.stats import Summary
from talbench.bench.probes.settings import seconds, unknown_setting, whole_number
from talbench.bench.units import Dimension

PROBE = "wireguard"
CLUSTER = "cluster"
SCHEMA = 1
KUBESPAN_PORT = 51820
SETUP_DEADLINE = 45.0
TEARDOWN_TIMEOUT = 45.0
TUNNEL_MIN_SHARE_OF_BYTES = 0.9  # WireGuard must have carried at least this share of iperf3's bytes


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class WireguardSettings:
    duration: float = 10.0  # iperf3 -t per path, seconds
    omit: int = 1  # iperf3 -O: seconds of slow start left out
    streams: int = 1
    rtt_count: int = 300
    rtt_interval: float = 0.01
    rtt_warmup: int = 10
    min_rtt_samples: int = 100
    max_other_pairs: int = 6
    implementation: str = "auto"  # auto (kernel, else wireguard-go) | kernel | wireguard-go
    listen_port: int = 51830  # first WireGuard port; pair i uses listen_port + i % 64
    echo_port: int = 51900  # UDP echo on the tunnel address; pair i uses echo_port + i % 64
    iperf_port: int = 5210  # pair i: iperf_port + 2 * (i % 64) (node path) and + 1 (tunnel)
    tunnel_subnet: str = "198.18.0.0/16"
    mtu: int = 1420
    quick: bool = False

    @property
    def connect_within(self) -> float:
        return 10.0

    def rtt_deadline(self) -> float:
        return (self.rtt_warmup + self.rtt_count) * self.rtt_interval * 1.3 + 20.0

    def iperf_deadline(self) -> float:
        return self.connect_within + self.duration + self.omit + 40.0


_INTS = {
    "omit": (0, 10), "streams": (1, 16), "rtt_count": (10, 100_000), "rtt_warmup": (0, 1000),
    "min_rtt_samples": (1, 100_000), "max_other_pairs": (0, 1000), "listen_port": (1024, 65535 - 64),
    "echo_port": (1024, 65535 - 64), "iperf_port": (1024, 65535 - 128), "mtu": (1280, 9000),
}
_DURATIONS = {"duration": (1.0, 60.0), "rtt_interval": (0.001, 1.0)}
_OTHER = {"implementation", "tunnel_subnet"}


def parse_settings(raw: Mapping[str, Any], *, quick: bool) -> WireguardSettings:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _INTS:
            values[key] = whole_number(key, value, *_INTS[key])
        elif key in _DURATIONS:
            values[key] = seconds(key, value, *_DURATIONS[key])
        elif key == "implementation":
            if value not in ("auto", "kernel", "wireguard-go"):
                raise ScenarioError(f"wireguard: implementation must be auto, kernel or wireguard-go, not {value!r}")
            values[key] = value
        elif key == "tunnel_subnet":
            try:
                subnet = ipaddress.ip_network(str(value))
            except ValueError as exc:
                raise ScenarioError(f"wireguard: tunnel_subnet {value!r}: {exc}") from exc
            if subnet.version != 4 or subnet.prefixlen > 24 or not subnet.is_private:
                raise ScenarioError(f"wireguard: tunnel_subnet must be a private IPv4 range of /24 or larger, not {value}")
            values[key] = str(subnet)
        else:
            raise unknown_setting(key, [*_INTS, *_DURATIONS, *_OTHER])
    settings = WireguardSettings(**values)
    for port_key in ("listen_port", "echo_port"):
        port = getattr(settings, port_key)
        if port <= KUBESPAN_PORT < port + 64:
            raise ScenarioError(f"wireguard: {port_key} {port}..{port + 63} would include KubeSpan's port {KUBESPAN_PORT}")
    if quick:
        # Demos and tests: short transfers, fewer RTT samples (still enough for a p99).
        count = min(settings.rtt_count, 150)
        settings = replace(
            settings, duration=min(settings.duration, 2.0), omit=0, rtt_count=count,
            min_rtt_samples=min(settings.min_rtt_samples, count // 2), quick=True,
        )
    if settings.min_rtt_samples > settings.rtt_count:
        raise ScenarioError(f"wireguard: min_rtt_samples {settings.min_rtt_samples} exceeds rtt_count {settings.rtt_count}")
    return settings


# ---------------------------------------------------------------------------------------------
# which pairs


def pair_sample(pairs: Sequence[tuple[str, str]], control_planes: set[str], max_other: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(measured, left out): every control-plane pair, plus at most ``max_other`` other pairs
    chosen by a stable hash of their names (the same cluster always gets the same sample)."""
    control = sorted(p for p in pairs if set(p) <= control_planes)
    others = sorted((p for p in pairs if not set(p) <= control_planes), key=lambda p: hashlib.sha256("|".join(p).encode()).hexdigest())
    return control + sorted(others[:max_other]), sorted(others[max_other:])


def tunnel_addresses(subnet: str, index: int) -> tuple[str, str]:
    """Pair ``index``'s /30 inside ``subnet``: (client, server) with prefix."""
    network = ipaddress.ip_network(subnet)
    blocks = network.num_addresses // 4
    base = network.network_address + 4 * (index % blocks)
    return f"{base + 1}/30", f"{base + 2}/30"


def _host(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


# ---------------------------------------------------------------------------------------------
# the driver


class WireguardDriver:
    name = PROBE

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> WireguardSettings:
        return parse_settings(raw, quick=quick)

    def metrics(self) -> Sequence[Metric]:
        return WIREGUARD_METRICS

    async def run(self, keys: frozenset[ResultKey], fleet: Fleet, settings: WireguardSettings, progress: Progress) -> list[Measurement]:
        results: list[Measurement] = []
        pair_keys = sorted(k for k in keys if k.peer is not None)
        node_keys = sorted(k for k in keys if k.peer is None)
        if node_keys:
            results += await self._kubespan(node_keys, fleet)
        control = {n.name for n in fleet.nodes if n.is_control_plane}
        measured, left_out = pair_sample([(k.node, k.peer) for k in pair_keys], control, settings.max_other_pairs)  # type: ignore[misc]
        for a, b in left_out:
            results.append(Measurement(ResultKey(PROBE, a, b), True, data={
                "schema": SCHEMA, "sampled": False,
                "reason": f"outside the bounded sample of other pairs (max_other_pairs={settings.max_other_pairs})"}))
        progress.update(PROBE, done=0, total=len(measured), note=f"{len(measured)} pair(s), {settings.duration:g}s per iperf3 path")
        for index, (a, b) in enumerate(measured):
            progress.update(PROBE, done=index, total=len(measured), note=f"{a} -> {b}")
            results.append(await self._pair(index, a, b, fleet, settings))
        progress.update(PROBE, done=len(measured), total=len(measured), note="done")
        return results

    # -- KubeSpan state per node ---------------------------------------------------------------

    async def _kubespan(self, node_keys: list[ResultKey], fleet: Fleet) -> list[Measurement]:
        names = sorted(fleet.agents)
        outcomes = await asyncio.gather(*(fleet.agents[n].run_job("wg_tunnel", {"action": "detect"}, fleet.run_id, deadline=30) for n in names))
        by_node = dict(zip(names, outcomes))
        results = []
        for key in node_keys:
            if key.node == CLUSTER:
                states = {n: dict(o.result.get("kubespan") or {}) for n, o in by_node.items() if o.ok}
                unknown = {n: o.error or "failed" for n, o in by_node.items() if not o.ok}
                unknown.update({n: f"agent not ready: {r}" for n, r in fleet.unready.items()})
                results.append(Measurement(key, True, data={"schema": SCHEMA, "kubespan": states, "unknown": unknown}))
                continue
            outcome = by_node.get(key.node)
            if outcome is None:
                results.append(Measurement(key, False, error=f"no agent on {key.node}"))
            elif not outcome.ok:
                results.append(_failed(key, outcome))
            else:
                results.append(Measurement(key, True, data={"schema": SCHEMA, "kubespan": dict(outcome.result.get("kubespan") or {})},
                                           started=outcome.started, ended=outcome.ended))
        return results

    # -- one pair ------------------------------------------------------------------------------

    async def _pair(self, index: int, a: str, b: str, fleet: Fleet, s: WireguardSettings) -> Measurement:
        key = ResultKey(PROBE, a, b)
        started = time.time()
        agents = {a: fleet.agents.get(a), b: fleet.agents.get(b)}
        for node, agent in agents.items():
            if agent is None:
                return Measurement(key, False, error=f"no agent on {node}: {fleet.unready.get(node, 'not deployed')}")
        node_b = fleet.node(b)
        tunnel = f"p{index}"
        address = dict(zip((a, b), tunnel_addresses(s.tunnel_subnet, index)))
        wg_port, echo_port = s.listen_port + index % 64, s.echo_port + index % 64
        iperf_node_port = s.iperf_port + 2 * (index % 64)
        run_id = fleet.run_id
        up: dict[str, Mapping[str, Any]] = {}
        try:
            # Step 1: both links, then each side learns the other.
            ups = await asyncio.gather(*(
                agents[n].run_job("wg_tunnel", {  # type: ignore[union-attr]
                    "action": "up", "tunnel": tunnel, "address": address[n], "listen_port": wg_port,
                    "echo_port": echo_port, "implementation": s.implementation, "mtu": s.mtu}, run_id, deadline=SETUP_DEADLINE)
                for n in (a, b)))
            for n, outcome in zip((a, b), ups):
                if outcome.ok:
                    up[n] = outcome.result
            for n, outcome in zip((a, b), ups):
                if not outcome.ok:
                    return _failed(key, outcome, f"tunnel setup on {n}")
            peers = await asyncio.gather(*(
                agents[n].run_job("wg_tunnel", {  # type: ignore[union-attr]
                    "action": "peer", "tunnel": tunnel, "public_key": up[o]["public_key"],
                    "endpoint_host": fleet.node(o).address, "endpoint_port": wg_port,
                    "allowed_ip": _host(address[o])}, run_id, deadline=SETUP_DEADLINE)
                for n, o in ((a, b), (b, a))))
            for n, outcome in zip((a, b), peers):
                if not outcome.ok:
                    return _failed(key, outcome, f"tunnel peer on {n}")

            # Step 2: RTT, both paths interleaved in one job (the warm-up also makes the handshake).
            rtt = await agents[a].run_job("rtt", {  # type: ignore[union-attr]
                "peers": [
                    {"name": "node", "host": node_b.address, "port": fleet.agent_port},
                    {"name": "tunnel", "host": _host(address[b]), "port": echo_port},
                ],
                "count": s.rtt_count, "interval_s": s.rtt_interval, "warmup": s.rtt_warmup, "stagger_s": 0.0,
            }, run_id, deadline=s.rtt_deadline())
            if not rtt.ok:
                return _failed(key, rtt, "rtt")
            rtt_peers = rtt.result.get("peers") or {}

            # Step 3: throughput, node path then tunnel; WireGuard counters around the tunnel run.
            node_iperf = await _iperf(agents[a], agents[b], node_b.address, iperf_node_port, run_id, s)  # type: ignore[arg-type]
            before = await _wg_stats(agents[a], tunnel, run_id)  # type: ignore[arg-type]
            tunnel_iperf = await _iperf(agents[a], agents[b], _host(address[b]), iperf_node_port + 1, run_id, s)  # type: ignore[arg-type]
            after = await _wg_stats(agents[a], tunnel, run_id)  # type: ignore[arg-type]
            unavailable = [r for r in (node_iperf, tunnel_iperf) if r.get("error_kind") == wire.ERROR_UNAVAILABLE]
            if unavailable:
                return Measurement(key, False, error=unavailable[0]["error"], error_kind=wire.ERROR_UNAVAILABLE, started=started, ended=time.time())
            peer_key = up[b]["public_key"]
            wg_sent = _delta(before, after, peer_key, "tx_bytes")
            data = {
                "schema": SCHEMA,
                "sampled": True,
                "client": a,
                "server": b,
                "kubespan": {a: dict(up[a].get("kubespan") or {}), b: dict(up[b].get("kubespan") or {})},
                "node_path": {
                    "host": node_b.address,
                    "via": _via(node_iperf),
                    "rtt": dict(rtt_peers.get("node") or {}),
                    "iperf": node_iperf,
                },
                "tunnel": {
                    "host": _host(address[b]),
                    "via": "wireguard-test-tunnel",
                    "interfaces": {a: up[a]["interface"], b: up[b]["interface"]},
                    "implementation": {a: up[a]["implementation"], b: up[b]["implementation"]},
                    "fwmark": {a: up[a].get("fwmark"), b: up[b].get("fwmark")},
                    "listen_port": wg_port,
                    "mtu": s.mtu,
                    "rtt": dict(rtt_peers.get("tunnel") or {}),
                    "iperf": tunnel_iperf,
                    "wg_tx_bytes": wg_sent,
                },
                "settings": {"duration_s": s.duration, "omit_s": s.omit, "streams": s.streams, "min_rtt_samples": s.min_rtt_samples},
            }
            return Measurement(key, True, data=data, started=started, ended=time.time(), resources=rtt.resources)
        finally:
            if up:
                await asyncio.shield(_teardown({n: agents[n] for n in up}, tunnel, run_id))  # type: ignore[misc]


def _failed(key: ResultKey, outcome: JobOutcome, what: str = "") -> Measurement:
    error = f"{what}: {outcome.error}" if what else (outcome.error or "failed")
    return Measurement(key, False, error=error, error_kind=outcome.error_kind, started=outcome.started, ended=outcome.ended)


def _via(iperf: Mapping[str, Any]) -> str:
    dev = ((iperf.get("client") or {}).get("route") or {}).get("dev")
    return "kubespan" if dev == "kubespan" else "plain"


def _delta(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, peer: str, field: str) -> int | None:
    try:
        return int(after["peers"][peer][field]) - int(before["peers"][peer][field])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


async def _wg_stats(agent: AgentClient, tunnel: str, run_id: str) -> Mapping[str, Any] | None:
    outcome = await agent.run_job("wg_tunnel", {"action": "stats", "tunnel": tunnel}, run_id, deadline=SETUP_DEADLINE)
    return outcome.result if outcome.ok else None


async def _iperf(client: AgentClient, server: AgentClient, host: str, port: int, run_id: str, s: WireguardSettings) -> dict[str, Any]:
    """One iperf3 transfer client -> server; the server's and client's raw results, or the error."""
    serving = asyncio.ensure_future(server.run_job("iperf", {
        "role": "server", "bind": host, "port": port, "duration_s": s.duration, "accept_within_s": s.connect_within + 5,
    }, run_id, deadline=s.iperf_deadline()))
    try:
        sending = await client.run_job("iperf", {
            "role": "client", "host": host, "port": port, "duration_s": s.duration, "connect_within_s": s.connect_within,
            "streams": s.streams, "omit_s": s.omit,
        }, run_id, deadline=s.iperf_deadline())
        if not sending.ok:
            serving.cancel()
            return {"error": f"iperf3 client: {sending.error}", "error_kind": sending.error_kind}
        served = await serving
    finally:
        if not serving.done():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    result: dict[str, Any] = {"client": dict(sending.result), "client_resources": dict(sending.resources)}
    if served.ok:
        result["server"] = dict(served.result)
    else:
        result["server_error"] = served.error
    return result


async def _teardown(agents: Mapping[str, AgentClient], tunnel: str, run_id: str) -> None:
    async def down(agent: AgentClient) -> None:
        await agent.run_job("wg_tunnel", {"action": "down", "tunnel": tunnel}, run_id, deadline=TEARDOWN_TIMEOUT)

    try:
        await asyncio.wait_for(asyncio.gather(*(down(agent) for agent in agents.values()), return_exceptions=True), TEARDOWN_TIMEOUT + 5)
    except asyncio.TimeoutError:
        pass  # the agents' cleanup registries release it with the run


# ---------------------------------------------------------------------------------------------
# metrics


def _pair_key(subject: Subject) -> tuple[ResultKey, ...]:
    a, b = subject.nodes
    return (ResultKey(PROBE, a, b),)


def _node_key(subject: Subject) -> tuple[ResultKey, ...]:
    return (ResultKey(PROBE, subject.nodes[0]),)


def _not_sampled(data: Mapping[str, Any]) -> Observation | None:
    if data.get("sampled") is False:
        return Observation(None, not_measured=str(data.get("reason") or "outside the bounded sample"))
    return None


def _pair_metric(
    name: str, dimension: Dimension, lower_is_better: bool, observe_data: Callable[[Mapping[str, Any]], Observation], description: str
) -> Metric:
    """A per-pair metric over the pair's one result; a pair outside the bounded sample says so."""

    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        data = measurements[0].data
        return _not_sampled(data) or observe_data(data)

    return Metric(name, PROBE, SubjectKind.PAIR, dimension, lower_is_better, observe, description, needs=_pair_key)


def _bps(path: Mapping[str, Any]) -> tuple[float | None, str | None]:
    iperf = path.get("iperf") or {}
    if iperf.get("error"):
        return None, str(iperf["error"])
    client = iperf.get("client") or {}
    value = client.get("received_bps")
    return (float(value), None) if isinstance(value, (int, float)) else (None, "no iperf3 figure")


def _gbit(value: float) -> str:
    return f"{value / 1e9:.3g} Gbit/s" if value >= 1e9 else f"{value / 1e6:.3g} Mbit/s"


def _tunnel_untrusted(data: Mapping[str, Any]) -> str | None:
    """Why the tunnel's throughput cannot be trusted to have gone through the tunnel."""
    tunnel = data.get("tunnel") or {}
    client = (tunnel.get("iperf") or {}).get("client") or {}
    dev = (client.get("route") or {}).get("dev")
    expected = (tunnel.get("interfaces") or {}).get(data.get("client"))
    if dev and expected and dev != expected:
        return f"iperf3 to the tunnel address was routed via {dev}, not the tunnel link {expected}"
    sent = tunnel.get("wg_tx_bytes")
    wanted = client.get("bytes_sent")
    if isinstance(sent, int) and isinstance(wanted, int) and sent < TUNNEL_MIN_SHARE_OF_BYTES * wanted:
        return f"WireGuard carried {sent} bytes, less than iperf3's {wanted}: traffic bypassed the tunnel"
    return None


def _throughput_metric(name: str, path: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        section = data.get(path) or {}
        value, error = _bps(section)
        via = section.get("via", path)
        if value is None:
            return Observation(None, detail=f"{via}: {error}")
        if path == "tunnel":
            untrusted = _tunnel_untrusted(data)
            if untrusted:
                return Observation(None, invalid=untrusted)
        client = (section.get("iperf") or {}).get("client") or {}
        detail = f"via {via}, {client.get('retransmits', '?')} retransmits, {client.get('seconds', 0):.3g}s"
        return Observation(value, len(client.get("intervals_bps") or ()), detail=detail, extra={"via": via})

    return _pair_metric(name, Dimension.BITRATE, False, observe, description)


def _observe_ratio(data: Mapping[str, Any]) -> Observation:
    node_path, tunnel = data.get("node_path") or {}, data.get("tunnel") or {}
    plain, plain_error = _bps(node_path)
    tunneled, tunnel_error = _bps(tunnel)
    if plain is None or tunneled is None:
        return Observation(None, detail="; ".join(e for e in (plain_error, tunnel_error) if e))
    if node_path.get("via") == "kubespan":
        return Observation(None, invalid=f"the node path runs through KubeSpan ({_gbit(plain)}), so there is no plain path to compare the tunnel ({_gbit(tunneled)}) with")
    untrusted = _tunnel_untrusted(data)
    if untrusted:
        return Observation(None, invalid=untrusted)
    if plain <= 0:
        return Observation(None, invalid="the plain path carried nothing")
    return Observation(tunneled / plain, 2, detail=f"tunnel {_gbit(tunneled)} vs plain {_gbit(plain)}",
                       extra={"tunnel_bps": tunneled, "plain_bps": plain})


def _rtt_samples(section: Mapping[str, Any]) -> tuple[list[float], int, int]:
    rtt = section.get("rtt") or {}
    return [ns / 1e9 for ns in rtt.get("samples_ns") or ()], int(rtt.get("sent", 0)), int(rtt.get("received", 0))


def _rtt_summary(data: Mapping[str, Any], path: str) -> tuple[Summary | None, str, str | None]:
    """Summary of one path's raw samples, a detail line, and a reason not to trust it."""
    samples, sent, received = _rtt_samples(data.get(path) or {})
    floor = int((data.get("settings") or {}).get("min_rtt_samples", 1))
    detail = f"n={received}/{sent}"
    if len(samples) < floor:
        return None, detail, f"too few {path.replace('_', ' ')} RTT samples ({len(samples)} < {floor})"
    return Summary.of(samples), detail, None


def _rtt_metric(name: str, path: str, field: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        summary, detail, untrusted = _rtt_summary(data, path)
        if summary is None:
            return Observation(None, invalid=untrusted, detail=detail)
        via = (data.get(path) or {}).get("via", path)
        return Observation(getattr(summary, field), summary.count, detail=f"via {via}, {detail}")

    return _pair_metric(name, Dimension.DURATION, True, observe, description)


def _observe_rtt_added(data: Mapping[str, Any]) -> Observation:
    plain, plain_detail, plain_bad = _rtt_summary(data, "node_path")
    tunnel, tunnel_detail, tunnel_bad = _rtt_summary(data, "tunnel")
    if plain is None or tunnel is None:
        return Observation(None, invalid=plain_bad or tunnel_bad)
    via = (data.get("node_path") or {}).get("via", "plain")
    return Observation(
        tunnel.p50 - plain.p50, plain.count + tunnel.count,
        detail=f"p50 tunnel {tunnel.p50 * 1e3:.3g} ms vs {via} {plain.p50 * 1e3:.3g} ms ({tunnel_detail}; {plain_detail})",
    )


def _cpu_cores(iperf: Mapping[str, Any]) -> tuple[float | None, str]:
    """Cores busy during the transfer on the two machines (once when both agents share one)."""
    client = iperf.get("client") or {}
    server = iperf.get("server") or {}
    a = (client.get("cpu") or {}).get("busy_cores")
    b = (server.get("cpu") or {}).get("busy_cores")
    if not isinstance(a, (int, float)):
        return None, "no CPU figure"
    if not isinstance(b, (int, float)):
        return float(a), "client side only"
    if client.get("boot_id") and client.get("boot_id") == server.get("boot_id"):
        return (float(a) + float(b)) / 2, "both agents on one machine: counted once"
    return float(a) + float(b), "client + server"


def _cpu_metric(name: str, path: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        section = data.get(path) or {}
        bps, error = _bps(section)
        if bps is None:
            return Observation(None, detail=str(error))
        cores, how = _cpu_cores(section.get("iperf") or {})
        if cores is None or bps <= 0:
            return Observation(None, detail=how)
        return Observation(cores / (bps / 1e9), 1, detail=f"{cores:.2f} cores busy at {_gbit(bps)} ({how})")

    return _pair_metric(name, Dimension.COUNT, True, observe, description)


def _observe_kubespan_cluster(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = measurements[0].data
    states = data.get("kubespan") or {}
    active = sorted(n for n, state in states.items() if state.get("active"))
    unknown = data.get("unknown") or {}
    if active:
        return Observation(float(len(nodes)), len(states), detail=f"KubeSpan active on {', '.join(active)}; {len(nodes)} nodes",
                           extra={"active": active})
    if unknown:
        return Observation(None, invalid=f"KubeSpan state unknown on {', '.join(sorted(unknown))}")
    return Observation(0.0, len(states), detail=f"KubeSpan not active on any of {len(states)} nodes")


def _observe_kubespan_storage(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    name = subject.nodes[0]
    node = next((n for n in nodes if n.name == name), None)
    storage = node is not None and STORAGE_LABEL in node.labels
    active = bool((measurements[0].data.get("kubespan") or {}).get("active"))
    role = "storage node" if storage else "not a storage node"
    return Observation(1.0 if storage and active else 0.0, 1, detail=f"KubeSpan {'active' if active else 'not active'}, {role}")


WIREGUARD_METRICS: tuple[Metric, ...] = (
    _throughput_metric("wireguard.node_throughput", "node_path", "TCP throughput between the node addresses (plain, or KubeSpan where it routes them)"),
    _throughput_metric("wireguard.tunnel_throughput", "tunnel", "TCP throughput through a WireGuard test tunnel between the two nodes"),
    _pair_metric("wireguard.throughput_ratio", Dimension.RATIO, False, _observe_ratio, "tunnel throughput as a share of the plain path's"),
    _rtt_metric("wireguard.node_rtt_p50", "node_path", "p50", "median RTT between the node addresses"),
    _rtt_metric("wireguard.tunnel_rtt_p50", "tunnel", "p50", "median RTT through the WireGuard test tunnel"),
    _rtt_metric("wireguard.tunnel_rtt_p99", "tunnel", "p99", "99th percentile RTT through the WireGuard test tunnel"),
    _pair_metric("wireguard.rtt_added", Dimension.DURATION, True, _observe_rtt_added, "median RTT the tunnel adds to the node path (p50 difference of raw samples)"),
    _cpu_metric("wireguard.tunnel_cpu_per_gbit", "tunnel", "CPU cores busy per Gbit/s through the tunnel (both nodes)"),
    _cpu_metric("wireguard.node_cpu_per_gbit", "node_path", "CPU cores busy per Gbit/s over the node path (both nodes)"),
    Metric("wireguard.kubespan_cluster_nodes", PROBE, SubjectKind.CLUSTER, Dimension.COUNT, True, _observe_kubespan_cluster,
           "number of nodes in a cluster with KubeSpan active (0 when KubeSpan is off)"),
    Metric("wireguard.kubespan_on_storage", PROBE, SubjectKind.NODE, Dimension.COUNT, True, _observe_kubespan_storage,
           "1 when KubeSpan is active on a node labelled node-role.kubernetes.io/storage", needs=_node_key),
)



DRIVER = WireguardDriver()
