"""WireGuard / KubeSpan overhead, one pair: client node ``a`` (first of the sorted pair) and
server node ``b``, measured by the driver in bench/probes/wireguard/driver.py:

1. set up a WireGuard test tunnel just for this pair and run: both agents create their link
   (``wireguard.tunnel`` job, action ``up``: fresh keys, a port other than 51820, addresses from
   198.18.0.0/15, the RFC 2544 benchmarking range) and return their public keys; then each is
   given the other as peer (action ``peer``);
2. measure RTT over the node path (b's address, the agent's echo responder) and through the
   tunnel (b's tunnel address, the echo responder the tunnel brought up), interleaved in one
   job of the RTT probe (its declaration's parameters) so both paths see the same moment; through
   a userspace tunnel (wireguard-go) both paths are echoed by the kernel instead (ICMP,
   ``wireguard.ping``, one path after the other; ``rtt_reflector``), falling back to the echo
   responders without a raw socket;
3. measure TCP throughput with iperf3 (``wireguard.iperf``) over the node path, then through the tunnel, and read
   WireGuard's byte counters to prove the tunnel figures went through the tunnel;
4. tear the tunnel down (always, also on cancellation; the agents' cleanup registries are the
   second line).

Which path each figure took is recorded from the kernel's route (``ip route get``): on a node
with KubeSpan the node path runs through the ``kubespan`` link, and the test tunnel's own UDP
bypasses KubeSpan (mark 0x20).  The result is the ``wireguard:a->b`` measurement; its metrics are
in bench/probes/wireguard/metrics.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.agents.params import Params, wire
from talbench.agents.probes.rtt import probe as rtt_agent
from talbench.agents.probes.rtt.probe import RttSettings
from talbench.agents.probes.wireguard.iperf import IperfSettings
from talbench.agents.probes.wireguard.links import USERSPACE
from talbench.agents.probes.wireguard.probe import IPERF_JOB, PAIR_PORTS, PING_JOB, TUNNEL_JOB, WireguardSettings
from talbench.agents.probes.wireguard.tunnel import TunnelLink
from talbench.agents.wire import ERROR_UNAVAILABLE
from talbench.bench.agent_client import AgentClient, JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.model import Measurement, ResultKey
from talbench.bench.probes.rtt.driver import deadline as rtt_deadline
from talbench.bench.probes.wireguard.metrics import NAME

SCHEMA = 1  # of every wireguard result's data (the driver's per-node and left-out results too)
SETUP_DEADLINE = 45.0
TEARDOWN_TIMEOUT = 45.0
CONNECT_WITHIN = 10.0  # the iperf3 client retries a refused connection this long
ACCEPT_WITHIN = CONNECT_WITHIN + 5.0  # and the server waits this long for it
RTT_JOB = rtt_agent.PROBE.jobs[0]  # both paths are measured by the RTT probe's job


# ---------------------------------------------------------------------------------------------
# what the jobs are sent


def shared(settings: WireguardSettings, part: type[Params]) -> dict[str, Any]:
    """The settings a job inherits (``part``: IperfSettings, TunnelLink), as the job is sent them."""
    return wire(part.model_validate({name: getattr(settings, name) for name in part.model_fields}))


def rtt_settings(settings: WireguardSettings) -> RttSettings:
    """The RTT run asked of the RTT probe, in its declaration's parameters: every stream at once
    (no stagger), the RTT probe's defaults for the rest."""
    return RttSettings(
        count=settings.rtt_count,
        interval=settings.rtt_interval,
        warmup=settings.rtt_warmup,
        stagger=0.0,
        min_samples=settings.min_rtt_samples,
    )


def reflector_of(settings: WireguardSettings, implementations: Sequence[str]) -> tuple[str, str]:
    """Who answers the RTT packets (``udp``: the agents' echo responders, ``icmp``: the kernel),
    and why.  ``auto`` picks the kernel's echo reply through a userspace tunnel: a user-space
    reflector's dwell leaves wireguard-go idle and the reply pays its wake-up, which the dwell
    subtraction cannot remove (agents/probes/wireguard/ping.py)."""
    if settings.rtt_reflector != "auto":
        return settings.rtt_reflector, "rtt_reflector setting"
    if USERSPACE in implementations:
        return "icmp", f"auto: a userspace tunnel ({USERSPACE})"
    return "udp", "auto: kernel WireGuard"


def ping_params(settings: WireguardSettings, targets: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    rtt = rtt_settings(settings)
    return {
        "count": rtt.count,
        "interval": rtt.interval,
        "warmup": rtt.warmup,
        "timeout": rtt.timeout,
        "jitter": rtt.jitter,
        "targets": [dict(t) for t in targets],
    }


def ping_deadline(settings: WireguardSettings, targets: Sequence[Mapping[str, str]]) -> float:
    """How long the coordinator waits for the ICMP job (its paths one after the other)."""
    return PING_JOB.time_limit(PING_JOB.parse(ping_params(settings, targets))) + 10.0


def iperf_deadline(settings: WireguardSettings) -> float:
    return CONNECT_WITHIN + settings.duration + settings.omit + 40.0


# ---------------------------------------------------------------------------------------------
# the pair's tunnel addresses


def tunnel_addresses(subnet: str, index: int) -> tuple[str, str]:
    """Pair ``index``'s /30 inside ``subnet``: (client, server) with prefix."""
    network = ipaddress.ip_network(subnet)
    blocks = network.num_addresses // 4
    base = network.network_address + 4 * (index % blocks)
    return f"{base + 1}/30", f"{base + 2}/30"


def _host(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


# -- one pair --------------------------------------------------------------------------------------


class PairMeasurement:
    """One pair's tunnel and figures: client ``a``, server ``b``, the ``index``-th pair measured
    (its ports and /30 follow from it)."""

    def __init__(self, index: int, a: str, b: str, fleet: Fleet, settings: WireguardSettings) -> None:
        self.key = ResultKey(NAME, a, b)
        self.a, self.b, self.fleet, self.s = a, b, fleet, settings
        self.tunnel = f"p{index}"
        self.address = dict(zip((a, b), tunnel_addresses(settings.tunnel_subnet, index), strict=True))
        slot = index % PAIR_PORTS
        self.wg_port, self.echo_port = settings.listen_port + slot, settings.echo_port + slot
        self.iperf_port = settings.iperf_port + 2 * slot  # node path; the tunnel's is the next one

    async def measure(self) -> Measurement:
        for node in (self.a, self.b):
            if node not in self.fleet.agents:
                return Measurement(
                    self.key, False, error=f"no agent on {node}: {self.fleet.unready.get(node, 'not deployed')}"
                )
        agents = {n: self.fleet.agents[n] for n in (self.a, self.b)}
        up: dict[str, Mapping[str, Any]] = {}
        try:
            return await self._measure(agents, up)
        finally:
            if up:
                await asyncio.shield(_teardown([agents[n] for n in up], self.tunnel, self.fleet.run_id))

    async def _tunnel_step(
        self, agent: AgentClient, params: Mapping[str, Any], deadline: float = SETUP_DEADLINE
    ) -> JobOutcome:
        return await agent.run_job(
            TUNNEL_JOB.name, {"tunnel": self.tunnel, **params}, self.fleet.run_id, deadline=deadline
        )

    async def _measure(self, agents: Mapping[str, AgentClient], up: dict[str, Mapping[str, Any]]) -> Measurement:
        a, b, s, key, fleet = self.a, self.b, self.s, self.key, self.fleet
        started = time.time()
        node_b = fleet.node(b)
        # Step 1: both links (``up`` records them for the teardown), then each side learns the other.
        link = shared(s, TunnelLink)
        ups = await asyncio.gather(
            *(
                self._tunnel_step(
                    agents[n],
                    {
                        "action": "up",
                        "address": self.address[n],
                        "listen_port": self.wg_port,
                        "echo_port": self.echo_port,
                        **link,
                    },
                )
                for n in (a, b)
            )
        )
        up.update({n: outcome.result for n, outcome in zip((a, b), ups, strict=True) if outcome.ok})
        for n, outcome in zip((a, b), ups, strict=True):
            if not outcome.ok:
                return failed_measurement(key, outcome, f"tunnel setup on {n}")
        peers = await asyncio.gather(
            *(
                self._tunnel_step(
                    agents[n],
                    {
                        "action": "peer",
                        "public_key": up[o]["public_key"],
                        "endpoint_host": fleet.node(o).address,
                        "endpoint_port": self.wg_port,
                        "allowed_ip": _host(self.address[o]),
                    },
                )
                for n, o in ((a, b), (b, a))
            )
        )
        for n, outcome in zip((a, b), peers, strict=True):
            if not outcome.ok:
                return failed_measurement(key, outcome, f"tunnel peer on {n}")

        # Step 2: RTT over both paths in one job (the warm-up also makes the handshake).
        reflector, why = reflector_of(s, [str(up[n].get("implementation")) for n in (a, b)])
        measured: JobOutcome | None = None
        rtt_peers: Mapping[str, Any] = {}
        if reflector == "icmp":
            targets = [{"name": "node", "host": node_b.address}, {"name": "tunnel", "host": _host(self.address[b])}]
            params = ping_params(s, targets)
            measured = await agents[a].run_job(PING_JOB.name, params, fleet.run_id, deadline=ping_deadline(s, targets))
            if measured.ok:
                rtt_peers = measured.result.get("targets") or {}
            elif measured.error_kind == ERROR_UNAVAILABLE:
                reflector, why = "udp", f"icmp unavailable: {measured.error}"
            else:
                return failed_measurement(key, measured, "rtt (icmp)")
        if reflector == "udp":
            rtt = rtt_settings(s)
            paths = [
                {"name": "node", "host": node_b.address, "port": fleet.agent_port},
                {"name": "tunnel", "host": _host(self.address[b]), "port": self.echo_port},
            ]
            measured = await agents[a].run_job(
                RTT_JOB.name, {**wire(rtt), "peers": paths}, fleet.run_id, deadline=rtt_deadline(rtt)
            )
            if not measured.ok:
                return failed_measurement(key, measured, "rtt")
            rtt_peers = measured.result.get("peers") or {}

        # Step 3: throughput, node path then tunnel; WireGuard counters around the tunnel run.
        node_iperf = await _iperf(agents[a], agents[b], node_b.address, self.iperf_port, fleet.run_id, s)
        before = await self._stats(agents[a])
        tunnel_iperf = await _iperf(agents[a], agents[b], _host(self.address[b]), self.iperf_port + 1, fleet.run_id, s)
        after = await self._stats(agents[a])
        unavailable = [r for r in (node_iperf, tunnel_iperf) if r.get("error_kind") == ERROR_UNAVAILABLE]
        if unavailable:
            return Measurement(
                key,
                False,
                error=unavailable[0]["error"],
                error_kind=ERROR_UNAVAILABLE,
                started=started,
                ended=time.time(),
            )
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
                "host": _host(self.address[b]),
                "via": "wireguard-test-tunnel",
                "interfaces": {a: up[a]["interface"], b: up[b]["interface"]},
                "implementation": {a: up[a]["implementation"], b: up[b]["implementation"]},
                "fwmark": {a: up[a].get("fwmark"), b: up[b].get("fwmark")},
                "listen_port": self.wg_port,
                "mtu": s.mtu,
                "rtt": dict(rtt_peers.get("tunnel") or {}),
                "iperf": tunnel_iperf,
                "wg_tx_bytes": _delta(before, after, up[b]["public_key"], "tx_bytes"),
            },
            "settings": {
                "duration_s": s.duration,
                "omit_s": s.omit,
                "streams": s.streams,
                "min_rtt_samples": s.min_rtt_samples,
                "rtt_reflector": reflector,
                "rtt_reflector_why": why,
            },
        }
        resources = measured.resources if measured is not None else {}
        return Measurement(key, True, data=data, started=started, ended=time.time(), resources=resources)

    async def _stats(self, agent: AgentClient) -> Mapping[str, Any] | None:
        outcome = await self._tunnel_step(agent, {"action": "stats"})
        return outcome.result if outcome.ok else None


def failed_measurement(key: ResultKey, outcome: JobOutcome, what: str = "") -> Measurement:
    return outcome.measurement(key, error=f"{what}: {outcome.error}" if what else (outcome.error or "failed"))


def _via(iperf: Mapping[str, Any]) -> str:
    dev = ((iperf.get("client") or {}).get("route") or {}).get("dev")
    return "kubespan" if dev == "kubespan" else "plain"


def _delta(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, peer: str, field: str) -> int | None:
    if before is None or after is None:
        return None
    try:
        return int(after["peers"][peer][field]) - int(before["peers"][peer][field])
    except (KeyError, TypeError, ValueError):
        return None


async def _iperf(
    client: AgentClient, server: AgentClient, host: str, port: int, run_id: str, s: WireguardSettings
) -> dict[str, Any]:
    """One iperf3 transfer client -> server; the server's and client's raw results, or the error."""
    transfer = {**shared(s, IperfSettings), "port": port}
    serving = asyncio.ensure_future(
        server.run_job(
            IPERF_JOB.name,
            {
                **transfer,
                "role": "server",
                "bind": host,
                "accept_within": ACCEPT_WITHIN,
            },
            run_id,
            deadline=iperf_deadline(s),
        )
    )
    try:
        sending = await client.run_job(
            IPERF_JOB.name,
            {
                **transfer,
                "role": "client",
                "host": host,
                "connect_within": CONNECT_WITHIN,
            },
            run_id,
            deadline=iperf_deadline(s),
        )
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


async def _teardown(agents: Sequence[AgentClient], tunnel: str, run_id: str) -> None:
    async def down(agent: AgentClient) -> None:
        await agent.run_job(TUNNEL_JOB.name, {"action": "down", "tunnel": tunnel}, run_id, deadline=TEARDOWN_TIMEOUT)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(down(agent) for agent in agents), return_exceptions=True), TEARDOWN_TIMEOUT + 5
        )
    except TimeoutError:
        pass  # the agents' cleanup registries release it with the run
