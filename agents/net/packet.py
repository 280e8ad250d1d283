"""The RTT probe's UDP packet (TWAMP-light in spirit, RFC 5357), shared by the sender and the
echo responder (the reflector).

    offset  size  field
    0       8     MAGIC
    8       8     stream id   (random per peer stream: replies from another stream are ignored)
    16      8     sequence number
    24      8     the sender's send stamp, echoed unchanged (it matches a reply to its request)
    32      8     T2: when the reflector received the request (ns on the reflector's clock)
    40      8     T3: when the reflector sent the reply (ns on the reflector's clock)
    48      4     reflector flags (REFLECTED, T2_KERNEL)
    52      4     reserved, zero
    56      ...   zero padding up to the requested payload size

All integers are unsigned, network byte order.  The sender fills the first 32 bytes and leaves
the rest zero; the reflector answers a packet that starts with MAGIC and is HEADER_SIZE to
MAX_PACKET bytes long by sending it back with T2, T3 and its flags written in (``reflect``).
Each host only ever differences its own clock, so the two need not be synchronised:
RTT = (T4 - T1) - (T3 - T2), the reflector's dwell (T3 - T2) taken out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"TBRTT\x00v2"
REQUEST = struct.Struct("!8sQQQ")
STAMPS = struct.Struct("!QQII")  # T2, T3, flags, reserved
HEADER_SIZE = REQUEST.size + STAMPS.size  # 56
MAX_PACKET = 1500

REFLECTED = 1  # T2 and T3 were written by a reflector
T2_KERNEL = 2  # T2 is the kernel's receive stamp (else the reflector's clock read on wake-up)


@dataclass(frozen=True)
class RttPacket:
    stream: int
    seq: int
    sent_ns: int
    t2_ns: int = 0
    t3_ns: int = 0
    flags: int = 0


def encode(packet: RttPacket, size: int) -> bytes:
    """The packet padded with zeros to ``size`` bytes (at least HEADER_SIZE)."""
    header = REQUEST.pack(MAGIC, packet.stream, packet.seq, packet.sent_ns)
    stamps = STAMPS.pack(packet.t2_ns, packet.t3_ns, packet.flags, 0)
    return header + stamps + bytes(max(0, size - HEADER_SIZE))


def decode(data: bytes) -> RttPacket | None:
    """The packet, or None when ``data`` is not an RTT packet."""
    if not is_echoable(data):
        return None
    _, stream, seq, sent_ns = REQUEST.unpack_from(data)
    t2, t3, flags, _ = STAMPS.unpack_from(data, REQUEST.size)
    return RttPacket(stream, seq, sent_ns, t2, t3, flags)


def is_echoable(data: bytes) -> bool:
    return HEADER_SIZE <= len(data) <= MAX_PACKET and data.startswith(MAGIC)


def reflect(data: bytes, t2_ns: int, t3_ns: int, flags: int) -> bytes:
    """The reply to ``data`` (an echoable packet): the same bytes with the reflector's stamps."""
    return data[: REQUEST.size] + STAMPS.pack(t2_ns, t3_ns, flags | REFLECTED, 0) + data[HEADER_SIZE:]
