"""WireGuard / KubeSpan overhead probe, declared: the scenario's ``probes.wireguard`` block and the
two jobs the coordinator drives per measured pair.

``wireguard.tunnel`` sets up, peers, reads and tears down a WireGuard test tunnel between two
agents (agents/probes/wireguard/tunnel.py); ``wireguard.iperf`` runs one side of an iperf3 transfer
(agents/probes/wireguard/iperf.py), over the node path and through the tunnel.  RTT over both paths is
the RTT probe's own job (agents/probes/rtt/probe.py), aimed at the node's echo responder and at the one
the tunnel brings up on its address; through a userspace tunnel (wireguard-go) it is
``wireguard.ping`` instead (agents/probes/wireguard/ping.py: the kernel's ICMP echo reply, see there why).

The settings are the two jobs' settings (``IperfSettings``, ``TunnelLink``: one declaration, the
jobs inherit it) plus what only the coordinator reads: the RTT run it asks of the RTT probe,
the trust floor, the sample of pairs, and the ranges from which each pair's ports and
addresses are taken.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from talbench.agents.params import SECONDS, param
from talbench.agents.probe import AgentJob, ProbeDeclaration, Tool
from talbench.agents.probes.wireguard import iperf, kubespan
from talbench.agents.probes.wireguard import ping as wg_ping
from talbench.agents.probes.wireguard import tunnel as wg_tunnel
from talbench.agents.probes.wireguard.iperf import PORT_MAX, PORT_MIN, IperfParams, IperfSettings
from talbench.agents.probes.wireguard.ping import PingParams
from talbench.agents.probes.wireguard.tunnel import TunnelLink, TunnelParams

PAIR_PORTS = 64  # pair i uses base port + i % 64 (iperf3: two ports per pair)
MAX_SUBNET_PREFIX = 24  # a /30 per pair, at least 64 of them


def _private_ipv4_range(text: str) -> str:
    subnet = ipaddress.ip_network(text)
    if subnet.version != 4 or subnet.prefixlen > MAX_SUBNET_PREFIX or not subnet.is_private:
        raise ValueError(f"must be a private IPv4 range of /{MAX_SUBNET_PREFIX} or larger, not {subnet}")
    return str(subnet)


# The range each pair's /30 is taken from, normalised (198.18.0.0/16).
TunnelSubnet = Annotated[str, AfterValidator(_private_ipv4_range)]


class WireguardSettings(TunnelLink, IperfSettings):
    """The scenario's ``probes.wireguard`` block: the jobs' settings (inherited) and the
    coordinator's (the RTT run, the trust floor, the pair sample, the port and address ranges).

    Names: a setting of the rtt probe's job run through the tunnel keeps the rtt probe's name with
    an ``rtt_`` prefix (``rtt_count`` is the rtt probe's ``count``, ``min_rtt_samples`` its
    ``min_samples``), since this block also holds iperf3's.  ``max_other_pairs`` is a cluster-wide
    sample of pairs, not the rtt and mtu probes' per-node budget ``max_peers``."""

    rtt_count: int = param(300, ge=10, le=100_000, help="RTT samples per path (both paths interleaved in one RTT job)")
    rtt_interval: float = param(0.01, ge=0.001, le=1.0, unit=SECONDS, help="gap between RTT packets of one path")
    rtt_warmup: int = param(
        10, ge=0, le=1000, help="RTT packets sent first and discarded (they also make the handshake)"
    )
    rtt_reflector: Literal["auto", "udp", "icmp"] = param(
        "auto",
        help="who answers the RTT packets: udp (the agents' echo responders, TWAMP-light), icmp (the kernel's "
        "echo reply; needs a raw socket, else udp), auto (icmp through a userspace tunnel, whose processes a "
        "user-space reflector's dwell leaves idle, else udp)",
    )
    min_rtt_samples: int = param(
        100, ge=1, le=100_000, coordinator_only=True, help="fewer RTT replies than this on a path: invalid, not judged"
    )
    max_other_pairs: int = param(
        6,
        ge=0,
        le=1000,
        coordinator_only=True,
        help="pairs with a worker measured: a deterministic sample of at most this many (control-plane pairs: all)",
    )
    listen_port: int = param(
        51830,
        ge=PORT_MIN,
        le=PORT_MAX - PAIR_PORTS,
        help=f"first test-tunnel WireGuard port; pair i uses it + i % {PAIR_PORTS}",
    )
    echo_port: int = param(
        51900,
        ge=PORT_MIN,
        le=PORT_MAX - PAIR_PORTS,
        help=f"first tunnel echo port (UDP); pair i uses it + i % {PAIR_PORTS}",
    )
    iperf_port: int = param(
        5210,
        ge=PORT_MIN,
        le=PORT_MAX - 2 * PAIR_PORTS,
        help=f"first iperf3 port; pair i uses it + 2 * (i % {PAIR_PORTS}) (node path) and the next (tunnel)",
    )
    tunnel_subnet: TunnelSubnet = param(
        "198.18.0.0/16", max_length=64, help="private IPv4 range the pairs' /30 tunnel addresses come from"
    )

    @model_validator(mode="after")
    def _clear_of_kubespan(self) -> WireguardSettings:
        for name in ("listen_port", "echo_port"):
            first: int = getattr(self, name)
            if first <= kubespan.WIREGUARD_PORT < first + PAIR_PORTS:
                raise ValueError(
                    f"{name} {first}..{first + PAIR_PORTS - 1} would include KubeSpan's port {kubespan.WIREGUARD_PORT}"
                )
        return self


def tunnel_job(sys_root: Path = Path("/sys")) -> AgentJob[TunnelParams]:
    """The tunnel job; ``sys_root`` is where KubeSpan's link is looked for (tests pass a tree)."""
    return AgentJob("wireguard.tunnel", TunnelParams, wg_tunnel.Tunnel(sys_root=sys_root).measure, wg_tunnel.time_limit)


IPERF_JOB: AgentJob[IperfParams] = AgentJob("wireguard.iperf", IperfParams, iperf.measure, iperf.time_limit)
PING_JOB: AgentJob[PingParams] = AgentJob("wireguard.ping", PingParams, wg_ping.measure, wg_ping.time_limit)
TUNNEL_JOB: AgentJob[TunnelParams] = tunnel_job()


PROBE = ProbeDeclaration(
    name="wireguard",
    summary="WireGuard test tunnel per pair: throughput (iperf3) and RTT over the node path and through the tunnel",
    settings=WireguardSettings,
    jobs=(IPERF_JOB, TUNNEL_JOB, PING_JOB),
    tools=(
        Tool("iperf3", "iperf3"),
        Tool("wireguard-go", "wireguard-go"),
        Tool("wg", "wireguard-tools"),
        Tool("ip", "iproute2"),
    ),
    capabilities=("NET_ADMIN",),  # WireGuard links, their addresses and fwmark; wireguard-go's TUN device
)
