"""Path MTU probe: the largest IP packet that crosses to a peer unfragmented, found with real UDP
packets that carry the Don't Fragment bit.

Per peer, one connected UDP socket in "probe" PMTU mode (IP_PMTUDISC_PROBE / IPV6_PMTUDISC_PROBE
with IPV6_DONTFRAG): every datagram leaves with DF set and the kernel neither fragments it nor
caps it at a path MTU it learnt earlier, so a router that cannot forward it drops it.  The probes
are RTT packets (agents/net/packet.py) padded to the size under test; the peer agent's echo
responder sends them back unchanged.  A size "crosses" when one of ``attempts`` packets of that
size is answered within ``timeout``.

The search is bounded: it tries ``low`` (no reply: the pair is unreachable at that size, and no
figure is given), then the ceiling (``high`` or the local interface's MTU, whichever is smaller),
then bisects between the largest size that crossed and the smallest that did not, to the byte:
at most about log2(high - low) + 2 sizes, each at most ``attempts`` x ``timeout``.  The echo
responder answers UDP payloads of up to 1500 bytes, so ``high`` is at most 1500 (the judged
question is whether a standard 1500-byte frame crosses).  Sizes are whole IP packets (IPv4: UDP
payload + 28 bytes, IPv6: + 48).  The reply travels the reverse path; each direction of a pair is
measured by its own sender and the pair's figure is the smaller.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import time
from typing import Any

from talbench.agents.net.packet import MAX_PACKET, RttPacket, decode, encode
from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration
from talbench.agents.probes.rtt.probe import MAX_PEERS, Peer

# Linux socket option values (Python's socket module does not export all of them).
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_PROBE = getattr(socket, "IP_PMTUDISC_PROBE", 3)
IP_MTU = getattr(socket, "IP_MTU", 14)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_PROBE = getattr(socket, "IPV6_PMTUDISC_PROBE", 3)
IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
OVERHEAD = {socket.AF_INET: 20 + 8, socket.AF_INET6: 40 + 8}  # IP + UDP headers
PARALLEL_PEERS = 16  # peers searched at once: bounds the agent's sockets and packets in flight
TIME_LIMIT_SLACK = 5.0


class MtuSettings(Params):
    """The scenario's ``probes.mtu`` block."""

    low: int = param(1280, ge=576, le=1500, help="smallest IP packet tried first (IPv6's minimum link MTU)")
    high: int = param(1500, ge=576, le=1500, help="largest IP packet searched (capped by the local link MTU)")
    attempts: int = param(3, ge=1, le=10, help="packets per size before it counts as not crossing")
    timeout: float = param(0.3, ge=0.01, le=5.0, unit=SECONDS, help="wait for each packet's echo")
    max_peers: int = param(
        6,
        ge=1,
        le=1000,
        coordinator_only=True,
        help="most pairs per node beyond the control-plane pairs (all searched); the rest are sampled out",
    )


class MtuParams(MtuSettings):
    peers: tuple[Peer, ...] = param(..., sequence=True, min_length=1, max_length=MAX_PEERS, help="peers to measure")


def time_limit(params: MtuParams) -> float:
    sizes = (params.high - params.low).bit_length() + 2
    rounds = -(-len(params.peers) // PARALLEL_PEERS)
    return rounds * sizes * params.attempts * params.timeout + TIME_LIMIT_SLACK


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, stream: int) -> None:
        self.stream = stream
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.errors: list[str] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        packet = decode(data)
        if packet is not None and packet.stream == self.stream:
            future = self.waiting.get(packet.seq)
            if future is not None and not future.done():
                future.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if len(self.errors) < 3:
            self.errors.append(f"{type(exc).__name__}: {exc}")


def _probe_mode(sock: socket.socket, family: int) -> int:
    """DF on every packet, no kernel fragmentation or PMTU cap; the local path MTU."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
        return int(sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    return int(sock.getsockopt(socket.IPPROTO_IP, IP_MTU))


async def _search(peer: Peer, params: MtuParams) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    replies = _Replies(random.getrandbits(64))
    tried: list[tuple[int, bool]] = []
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: replies, remote_addr=(peer.host, peer.port))
    except OSError as exc:
        return {"mtu": None, "tried": [], "error": f"{type(exc).__name__}: {exc}"}
    sock: socket.socket = transport.get_extra_info("socket")
    family = sock.family
    seq = 0

    async def crosses(size: int) -> bool:
        nonlocal seq
        for _ in range(params.attempts):
            seq += 1
            future: asyncio.Future[None] = loop.create_future()
            replies.waiting[seq] = future
            try:
                payload = encode(RttPacket(replies.stream, seq, time.perf_counter_ns()), size - OVERHEAD[family])
                transport.sendto(payload)
                await asyncio.wait_for(future, params.timeout)
                tried.append((size, True))
                return True
            except (TimeoutError, OSError):
                pass
            finally:
                replies.waiting.pop(seq, None)
        tried.append((size, False))
        return False

    try:
        local_mtu = _probe_mode(sock, family)
        ceiling = min(params.high, local_mtu, MAX_PACKET + OVERHEAD[family])
        low = min(params.low, ceiling)
        result: dict[str, Any] = {
            "family": 6 if family == socket.AF_INET6 else 4,
            "local_mtu": local_mtu,
            "low": low,
            "ceiling": ceiling,
        }
        if not await crosses(low):
            return {
                **result,
                "mtu": None,
                "tried": tried,
                "error": f"no reply at {low} bytes",
                "socket_errors": replies.errors,
            }
        good, bad = low, None
        if await crosses(ceiling):
            good = ceiling
        else:
            bad = ceiling
            while bad - good > 1:
                middle = (good + bad) // 2
                if await crosses(middle):
                    good = middle
                else:
                    bad = middle
        return {**result, "mtu": good, "tried": tried, "error": None, "socket_errors": replies.errors}
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "")
        return {"mtu": None, "tried": tried, "error": f"{code or type(exc).__name__}: {exc.strerror or exc}"}
    finally:
        transport.close()


async def measure(params: MtuParams, ctx: ProbeContext) -> dict[str, Any]:
    gate = asyncio.Semaphore(PARALLEL_PEERS)

    async def one(peer: Peer) -> dict[str, Any]:
        async with gate:
            return {"host": peer.host, "port": peer.port, **await _search(peer, params)}

    results = await asyncio.gather(*(one(peer) for peer in params.peers))
    return {"peers": {peer.name: result for peer, result in zip(params.peers, results, strict=True)}}


JOB: AgentJob[MtuParams] = AgentJob("mtu", MtuParams, measure, time_limit)

PROBE = ProbeDeclaration(
    name="mtu",
    summary="path MTU per pair: the largest DF-marked UDP packet that crosses, by bounded bisection",
    settings=MtuSettings,
    jobs=(JOB,),
)
