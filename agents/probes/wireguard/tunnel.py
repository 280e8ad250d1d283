"""The wireguard probe's tunnel job (``wireguard.tunnel``): a WireGuard test tunnel between two
agents, set up for one run and pair, torn down always.

The coordinator drives it in steps (one job each, ``action``):

``up``      create this node's link (kernel WireGuard, else wireguard-go), a fresh key pair, the
            listen port and tunnel address given, and a UDP echo responder bound to the tunnel
            address (so the RTT probe's job can measure through the tunnel); returns the public
            key.  When KubeSpan is active the link's own UDP carries mark 0x20 so it bypasses
            KubeSpan (no tunnel-in-tunnel).  Everything is registered in the run's cleanup registry.
``peer``    add the other side (public key, endpoint, its tunnel address).
``stats``   per-peer handshake and byte counters (to prove traffic went through the tunnel).
``down``    release the tunnel (link, wireguard-go process, echo responder).
``detect``  KubeSpan's state on this node.

Link names are ``tb`` + a hash of (run id, node, tunnel): unique per run and node, 12 characters.
The private key exists only in memory and on ``wg``'s standard input.  The job is declared by the
wireguard probe (agents/probes/wireguard/probe.py); this module holds its parameters and its run.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, RootModel

from talbench.agents.net.echo import start_echo
from talbench.agents.params import Params, param
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.wireguard import kubespan
from talbench.agents.probes.wireguard import links as wireguard
from talbench.agents.probes.wireguard.iperf import PORT_MAX, PORT_MIN, IpAddress, boot_id

TUNNEL_ID = r"^[a-z0-9][a-z0-9-]{0,39}$"
WG_PUBLIC_KEY = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"  # 32 bytes, base64
MAX_PREFIX_HOSTS = 1024  # tunnel subnets are small test ranges


def link_name(run_id: str, node: str, tunnel: str) -> str:
    digest = hashlib.sha256(f"{run_id}/{node}/{tunnel}".encode()).hexdigest()
    return f"tb{digest[:10]}"


def cleanup_name(tunnel: str) -> str:
    return f"wg-tunnel:{tunnel}"


def _host_in_test_subnet(text: str) -> str:
    interface = ipaddress.ip_interface(text)
    if interface.network.num_addresses > MAX_PREFIX_HOSTS or interface.ip == interface.network.network_address:
        raise ValueError(
            f"{interface} must be a host address in a small test subnet (at most {MAX_PREFIX_HOSTS} addresses)"
        )
    return str(interface)


def _not_kubespans(port: int) -> int:
    if port == kubespan.WIREGUARD_PORT:
        raise ValueError(f"{port} is KubeSpan's port: use another one")
    return port


# A tunnel address with its prefix (198.18.0.1/30), normalised.
TunnelAddress = Annotated[str, AfterValidator(_host_in_test_subnet)]
# A port of the test tunnel: never KubeSpan's (its bounds are the field's).
TunnelPort = Annotated[int, AfterValidator(_not_kubespans)]


class TunnelLink(Params):
    """The test link, as the scenario's ``probes.wireguard`` block sets it (every pair's alike)."""

    implementation: wireguard.Implementation = param(
        "auto",
        help="WireGuard implementation: auto (the kernel's when it has one, else wireguard-go), kernel, wireguard-go",
    )
    mtu: int = param(1420, ge=1280, le=9000, help="the test link's MTU")


class OneTunnel(Params):
    tunnel: str = param(pattern=TUNNEL_ID, help="the tunnel's id within the run (1-40 of [a-z0-9-])")


class TunnelUp(TunnelLink, OneTunnel):
    """Create this side: the link's settings plus this side's address and ports."""

    action: Literal["up"] = param(help="create this side's link, keys and echo responder")
    address: TunnelAddress = param(max_length=64, help="this side's tunnel address with prefix (198.18.0.1/30)")
    listen_port: TunnelPort = param(ge=PORT_MIN, le=PORT_MAX, help="WireGuard's UDP port")
    echo_port: TunnelPort = param(ge=PORT_MIN, le=PORT_MAX, help="the echo responder's UDP port on the tunnel address")
    bypass_mark: int | None = param(
        None,
        ge=1,
        le=0xFFFFFFFF,
        help="fwmark of the link's own UDP (default: 0x20 when KubeSpan is active, else none)",
    )


class TunnelPeer(OneTunnel):
    """Give this side the other one."""

    action: Literal["peer"] = param(help="add the other side as this link's peer")
    public_key: str = param(pattern=WG_PUBLIC_KEY, help="the other side's public key (base64)")
    endpoint_host: IpAddress = param(max_length=64, help="the other side's node address")
    endpoint_port: TunnelPort = param(ge=PORT_MIN, le=PORT_MAX, help="the other side's WireGuard port")
    allowed_ip: IpAddress = param(max_length=64, help="the other side's tunnel address")


class TunnelOf(OneTunnel):
    action: Literal["stats", "down"] = param(help="stats: the peers' counters; down: release the tunnel")


class KubeSpanDetect(Params):
    action: Literal["detect"] = param(help="KubeSpan's state on this node")


class TunnelParams(
    RootModel[Annotated[TunnelUp | TunnelPeer | TunnelOf | KubeSpanDetect, Field(discriminator="action")]]
):
    """One step of one pair's tunnel (``action``): the link's settings plus what the driver fills in."""

    model_config = ConfigDict(frozen=True)


def time_limit(params: TunnelParams) -> float:
    return 30.0 if params.root.action in ("up", "down") else 15.0


class Tunnel:
    """Runs the steps; ``sys_root`` is where KubeSpan's link is looked for (tests pass a tree)."""

    def __init__(self, *, sys_root: Path = Path("/sys")) -> None:
        self._sys_root = sys_root

    async def measure(self, params: TunnelParams, ctx: ProbeContext) -> dict[str, Any]:
        step = params.root
        if isinstance(step, KubeSpanDetect):
            return {"kubespan": kubespan.detect(self._sys_root).as_dict(), "boot_id": boot_id()}
        name = link_name(ctx.run_id, ctx.node, step.tunnel)
        registered = cleanup_name(step.tunnel) in ctx.cleanup.names(ctx.run_id)
        if isinstance(step, TunnelUp):
            if registered:
                raise ProbeParamError(f"tunnel {step.tunnel} is up already in run {ctx.run_id}")
            return await self._up(step, ctx, name)
        if step.action == "down":
            if registered:
                await ctx.cleanup.release(ctx.run_id, cleanup_name(step.tunnel))
            return {"interface": name, "released": registered, "exists": await wireguard.link_exists(name)}
        if not registered:
            raise ProbeParamError(f"no tunnel {step.tunnel} in run {ctx.run_id} on {ctx.node}")
        if isinstance(step, TunnelPeer):
            allowed = ipaddress.ip_address(step.allowed_ip)
            allowed_ip = f"{allowed}/{allowed.max_prefixlen}"
            endpoint = _endpoint(step.endpoint_host, step.endpoint_port)
            await wireguard.add_peer(name, public_key=step.public_key, endpoint=endpoint, allowed_ips=allowed_ip)
            return {"interface": name, "peer": step.public_key, "allowed_ip": allowed_ip}
        return {"interface": name, "peers": await wireguard.peer_stats(name)}

    async def _up(self, params: TunnelUp, ctx: ProbeContext, name: str) -> dict[str, Any]:
        state = kubespan.detect(self._sys_root)
        mark = (
            params.bypass_mark if params.bypass_mark is not None else (kubespan.BYPASS_MARK if state.active else None)
        )
        link = await wireguard.create(name, params.implementation)
        echo = None

        async def release() -> None:
            if echo is not None:
                echo.close()
            await wireguard.delete(link)

        ctx.cleanup.add(ctx.run_id, cleanup_name(params.tunnel), release)
        try:
            private, public = await wireguard.generate_keypair()
            await wireguard.configure(
                link,
                private_key=private,
                listen_port=params.listen_port,
                address=params.address,
                fwmark=mark,
                mtu=params.mtu,
            )
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
