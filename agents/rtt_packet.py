"""The RTT probe's UDP packet, shared by the probe (sender) and the echo responder.

    offset  size  field
    0       8     MAGIC
    8       8     stream id   (random per peer stream: replies from another stream are ignored)
    16      8     sequence number
    24      8     send time, time.perf_counter_ns() of the sender
    32      ...   zero padding up to the requested payload size

All integers are unsigned, network byte order.  The responder echoes a packet unchanged when it
starts with MAGIC and is at most MAX_PACKET bytes; anything else is ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"TBRTT\x00v1"
HEADER = struct.Struct("!8sQQQ")
HEADER_SIZE = HEADER.size  # 32
MAX_PACKET = 1500


@dataclass(frozen=True)
class RttPacket:
    stream: int
    seq: int
    sent_ns: int


def encode(packet: RttPacket, size: int) -> bytes:
    """The packet padded with zeros to ``size`` bytes (at least HEADER_SIZE)."""
    header = HEADER.pack(MAGIC, packet.stream, packet.seq, packet.sent_ns)
    return header + bytes(max(0, size - HEADER_SIZE))


def decode(data: bytes) -> RttPacket | None:
    """The packet, or None when ``data`` is not an RTT packet."""
    if len(data) < HEADER_SIZE or len(data) > MAX_PACKET or not data.startswith(MAGIC):
        return None
    _, stream, seq, sent_ns = HEADER.unpack_from(data)
    return RttPacket(stream, seq, sent_ns)


def is_echoable(data: bytes) -> bool:
    return len(data) <= MAX_PACKET and data.startswith(MAGIC)
