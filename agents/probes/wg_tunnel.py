"""WireGuard test tunnel between two agents, set up for one run and pair, torn down always.

The coordinator drives it in steps (one job each, ``action``):

``up``      create this node's link (kernel WireGuard, else wireguard-go), a fresh key pair, the
            listen port and tunnel address given, and a UDP echo responder bound to the tunnel
            address (so the RTT probe can measure through the tunnel); returns the public key.
            When KubeSpan is active the link's own UDP carries mark 0x20 so it bypasses KubeSpan
            (no tunnel-in-tunnel).  Everything is registered in the run's cleanup registry.
``peer``    add the other side (public key, endpoint, its tunnel address).
``stats``   per-peer handshake and byte counters (to prove traffic went through the tunnel).
``down``    release the tunnel (link, wireguard-go process, echo responder).
``detect``  KubeSpan's state on this node.

Link names are ``tb`` + a hash of (run id, node, tunnel): unique per run and node, 12 characters.
The private key exists only in memory and on ``wg``'s standard input.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from talbench.agents import kubespan, wireguard
from talbench.agents.echo import start_echo
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.iperf import boot_id

ACTIONS = ("up", "peer", "stats", "down", "detect")
TUNNEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
DEFAULT_MTU = 1420
MAX_PREFIX_HOSTS = 1024  # tunnel subnets are small test ranges


def link_name(run_id: str, node: str, tunnel: str) -> str:
    digest = hashlib.sha256(f"{run_id}/{node}/{tunnel}".encode()).hexdigest()
    return f"tb{digest[:10]}"


def cleanup_name(tunnel: str) -> str:
    return f"wg-tunnel:{tunnel}"


@dataclass(frozen=True)
class TunnelParams:
    action: str
    tunnel: str = ""
    address: str = ""  # up: this side's tunnel address, CIDR
    listen_port: int = 0
    echo_port: int = 0
    implementation: str = "auto"
    mtu: int = DEFAULT_MTU
    bypass_mark: int | None = None  # None: 0x20 when KubeSpan is active, no mark otherwise
    public_key: str = ""  # peer: the other side's
    endpoint_host: str = ""
    endpoint_port: int = 0
    allowed_ip: str = ""  # peer: the other side's tunnel address


def _int(params: Mapping[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProbeParamError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _port(params: Mapping[str, Any], name: str) -> int:
    port = _int(params, name, 1024, 65535)
    if port == kubespan.WIREGUARD_PORT:
        raise ProbeParamError(f"{name} {port} is KubeSpan's port: use another one")
    return port


_KEYS = {
    "up": {"action", "tunnel", "address", "listen_port", "echo_port", "implementation", "mtu", "bypass_mark"},
    "peer": {"action", "tunnel", "public_key", "endpoint_host", "endpoint_port", "allowed_ip"},
    "stats": {"action", "tunnel"},
    "down": {"action", "tunnel"},
    "detect": {"action"},
}
_WG_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")


def parse_params(params: Mapping[str, Any]) -> TunnelParams:
    action = params.get("action")
    if action not in ACTIONS:
        raise ProbeParamError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    unknown = set(params) - _KEYS[action]
    if unknown:
        raise ProbeParamError(f"unknown parameter(s) for wg_tunnel {action}: {', '.join(sorted(unknown))}")
    if action == "detect":
        return TunnelParams(action)
    tunnel = params.get("tunnel")
    if not isinstance(tunnel, str) or not TUNNEL_ID.match(tunnel):
        raise ProbeParamError(f"tunnel must be 1-40 of [a-z0-9-], not {tunnel!r}")
    if action in ("stats", "down"):
        return TunnelParams(action, tunnel)
    if action == "up":
        try:
            interface = ipaddress.ip_interface(str(params.get("address")))
        except ValueError as exc:
            raise ProbeParamError(f"address must be an address with prefix (198.18.0.1/30), not {params.get('address')!r}") from exc
        if interface.network.num_addresses > MAX_PREFIX_HOSTS or interface.ip in (interface.network.network_address,):
            raise ProbeParamError(f"address {interface} must be a host address in a small test subnet")
        implementation = params.get("implementation", "auto")
        if implementation not in wireguard.IMPLEMENTATIONS:
            raise ProbeParamError(f"implementation must be one of {', '.join(wireguard.IMPLEMENTATIONS)}")
        mark = params.get("bypass_mark")
        return TunnelParams(
            action,
            tunnel,
            address=str(interface),
            listen_port=_port(params, "listen_port"),
            echo_port=_port(params, "echo_port"),
            implementation=implementation,
            mtu=_int(params, "mtu", 1280, 9000, DEFAULT_MTU),
            bypass_mark=None if mark is None else _int(params, "bypass_mark", 1, 0xFFFFFFFF),
        )
    public_key = params.get("public_key")
    if not isinstance(public_key, str) or not _WG_KEY.match(public_key):
        raise ProbeParamError("public_key must be a WireGuard public key (base64, 44 characters)")
    try:
        host = str(ipaddress.ip_address(str(params.get("endpoint_host"))))
        allowed = ipaddress.ip_address(str(params.get("allowed_ip")))
    except ValueError as exc:
        raise ProbeParamError(f"endpoint_host and allowed_ip must be IP addresses ({exc})") from exc
    return TunnelParams(
        action,
        tunnel,
        public_key=public_key,
        endpoint_host=host,
        endpoint_port=_port(params, "endpoint_port"),
        allowed_ip=f"{allowed}/{allowed.max_prefixlen}",
    )


class WgTunnelProbe:
    name = "wg_tunnel"

    def __init__(self, *, sys_root: Path = Path("/sys")) -> None:
        self._sys_root = sys_root

    def parse(self, params: Mapping[str, Any]) -> TunnelParams:
        return parse_params(params)

    def time_limit(self, params: TunnelParams) -> float:
        return 30.0 if params.action in ("up", "down") else 15.0

    async def run(self, params: TunnelParams, ctx: ProbeContext) -> dict[str, Any]:
        if params.action == "detect":
            return {"kubespan": kubespan.detect(self._sys_root).as_dict(), "boot_id": boot_id()}
        name = link_name(ctx.run_id, ctx.node, params.tunnel)
        registered = cleanup_name(params.tunnel) in ctx.cleanup.names(ctx.run_id)
        if params.action == "up":
            if registered:
                raise ProbeParamError(f"tunnel {params.tunnel} is up already in run {ctx.run_id}")
            return await self._up(params, ctx, name)
        if params.action == "down":
            if registered:
                await ctx.cleanup.release(ctx.run_id, cleanup_name(params.tunnel))
            return {"interface": name, "released": registered, "exists": await wireguard.link_exists(name)}
        if not registered:
            raise ProbeParamError(f"no tunnel {params.tunnel} in run {ctx.run_id} on {ctx.node}")
        if params.action == "peer":
            link = wireguard.WgLink(name, "")
            await wireguard.add_peer(
                link,
                public_key=params.public_key,
                endpoint=_endpoint(params.endpoint_host, params.endpoint_port),
                allowed_ips=params.allowed_ip,
            )
            return {"interface": name, "peer": params.public_key, "allowed_ip": params.allowed_ip}
        return {"interface": name, "peers": await wireguard.peer_stats(name)}

    async def _up(self, params: TunnelParams, ctx: ProbeContext, name: str) -> dict[str, Any]:
        state = kubespan.detect(self._sys_root)
        mark = params.bypass_mark if params.bypass_mark is not None else (kubespan.BYPASS_MARK if state.active else None)
        link = await wireguard.create(name, params.implementation)
        echo = None

        async def release() -> None:
            if echo is not None:
                echo.close()
            await wireguard.delete(link)

        ctx.cleanup.add(ctx.run_id, cleanup_name(params.tunnel), release)
        try:
            private, public = await wireguard.generate_keypair()
            await wireguard.configure(link, private_key=private, listen_port=params.listen_port, address=params.address, fwmark=mark, mtu=params.mtu)
            del private
            tunnel_ip = str(ipaddress.ip_interface(params.address).ip)
            echo = await start_echo(tunnel_ip, params.echo_port)
        except BaseException:
            await ctx.cleanup.release(ctx.run_id, cleanup_name(params.tunnel))
            raise
        return {
            "interface": name,
            "implementation": link.implementation,
            "public_key": public,
            "listen_port": params.listen_port,
            "address": params.address,
            "echo_port": params.echo_port,
            "fwmark": mark,
            "mtu": params.mtu,
            "kubespan": state.as_dict(),
            "boot_id": boot_id(),
        }


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
