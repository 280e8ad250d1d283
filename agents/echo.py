"""UDP echo responder for the RTT probe: answers RTT packets (rtt_packet.MAGIC, at most
MAX_PACKET bytes) by sending them back unchanged to the sender; ignores everything else."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from talbench.agents.rtt_packet import is_echoable

log = logging.getLogger(__name__)


@dataclass
class EchoCounters:
    answered: int = 0
    ignored: int = 0
    errors: int = 0


class EchoProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.counters = EchoCounters()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.transport is None or not is_echoable(data):
            self.counters.ignored += 1
            return
        self.transport.sendto(data, addr)
        self.counters.answered += 1

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP errors for an earlier reply; nothing to do but count them.
        self.counters.errors += 1
        log.debug("echo responder: %s", exc)


@dataclass(frozen=True)
class EchoResponder:
    transport: asyncio.DatagramTransport
    protocol: EchoProtocol

    @property
    def counters(self) -> EchoCounters:
        return self.protocol.counters

    @property
    def address(self) -> tuple:
        return self.transport.get_extra_info("sockname")

    def close(self) -> None:
        self.transport.close()


async def start_echo(host: str, port: int) -> EchoResponder:
    """Bind the responder to (host, port) UDP; raises OSError when that is impossible."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(EchoProtocol, local_addr=(host, port))
    assert isinstance(protocol, EchoProtocol)
    log.info("UDP echo responder on %s", transport.get_extra_info("sockname"))
    return EchoResponder(transport, protocol)  # type: ignore[arg-type]
