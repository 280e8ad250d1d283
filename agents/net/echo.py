"""UDP echo responder for the RTT probe, the reflector of TWAMP-light: answers RTT packets
(packet.MAGIC, HEADER_SIZE to MAX_PACKET bytes) by sending them back to the sender with its
receive and send stamps written in (T2: the kernel's receive stamp, ``SO_TIMESTAMPNS``; T3: its
clock read just before the reply is handed to the kernel), so the time a request waited for this
process (a busy, stalled or throttled agent) is taken out of the round trip by the sender instead
of being counted as network delay.  Everything else is ignored.

Replies leave from the address the request was sent to (IP_PKTINFO / IPV6_PKTINFO reflected
back), so an agent listening on a wildcard address still answers correctly on a multi-address
node (a VIP, a KubeSpan or secondary address): the sender's connected socket drops replies
from any other source address.  That needs recvmsg/sendmsg, hence a plain non-blocking socket
driven by the event loop's reader callback rather than an asyncio DatagramProtocol.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from dataclasses import dataclass

from talbench.agents.net.packet import MAX_PACKET, T2_KERNEL, is_echoable, reflect
from talbench.agents.net.timestamps import enable_receive_stamps, receive_stamp

log = logging.getLogger(__name__)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python does not always export it
IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex
ANCILLARY_SPACE = socket.CMSG_SPACE(IN_PKTINFO.size) + socket.CMSG_SPACE(IN6_PKTINFO.size) + socket.CMSG_SPACE(16)
BATCH = 64  # datagrams handled per readable event before yielding to the loop
RECEIVE_BUFFER = 1 << 20  # requests queued while this process waits for a CPU (capped by rmem_max)


@dataclass
class EchoCounters:
    answered: int = 0
    ignored: int = 0
    errors: int = 0


def reply_ancillary(ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Ancillary data that makes the reply leave from the request's destination address."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= IN_PKTINFO.size:
            _, _, destination = IN_PKTINFO.unpack_from(data)
            return [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, destination, bytes(4)))]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= IN6_PKTINFO.size:
            destination, ifindex = IN6_PKTINFO.unpack_from(data)
            return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IN6_PKTINFO.pack(destination, ifindex))]
    return []


class EchoResponder:
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self.counters = EchoCounters()
        self.address = sock.getsockname()
        loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, flags, addr = self._sock.recvmsg(MAX_PACKET + 1, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.counters.errors += 1
                log.debug("echo responder: %s", exc)
                return
            kernel_t2 = receive_stamp(ancdata)
            t2 = kernel_t2 or time.time_ns()
            if flags & socket.MSG_TRUNC or not is_echoable(data):
                self.counters.ignored += 1
                continue
            route = reply_ancillary(ancdata)
            try:
                reply = reflect(data, t2, time.time_ns(), T2_KERNEL if kernel_t2 else 0)
                self._sock.sendmsg([reply], route, 0, addr)
            except OSError as exc:  # e.g. a full send buffer: the sender sees a lost packet
                self.counters.errors += 1
                log.debug("echo responder: reply to %s: %s", addr, exc)
            else:
                self.counters.answered += 1

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if family == socket.AF_INET6:
            # like asyncio's TCP server for the API: "::" means IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        enable_receive_stamps(sock)  # without: T2 is read on wake-up, and the sender sees the flag
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def start_echo(host: str, port: int) -> EchoResponder:
    """Bind the responder to (host, port) UDP; raises OSError when that is impossible."""
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(None, _bind, host, port) if not _is_literal(host) else _bind(host, port)
    responder = EchoResponder(sock, loop)
    log.debug("UDP echo responder on %s", responder.address)
    return responder


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return not host  # "" is the wildcard
    return True
