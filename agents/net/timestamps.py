"""Kernel timestamps on UDP sockets (Linux ``SO_TIMESTAMPING``, ``SO_TIMESTAMPNS``).

A timestamp taken by the kernel when a packet leaves (the driver's software stamp, else the one
taken on entering the packet scheduler) or arrives does not move when the process that sent or
reads it is descheduled, throttled or busy: the RTT probe takes T1 and T4 this way, the echo
responder T2.  All are CLOCK_REALTIME, read and differenced on one host only.

Transmit stamps come back on the socket's error queue, one message per stamp, each naming the
send it belongs to by a counter (``SOF_TIMESTAMPING_OPT_ID``: 0 for the socket's first send).
Python's socket module exports none of these constants; the values are Linux's ABI.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS
SO_TIMESTAMPING = 37  # == SCM_TIMESTAMPING
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_TX_SCHED = 1 << 8
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
SENDER_FLAGS = (
    SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_TX_SCHED
    | SOF_TIMESTAMPING_RX_SOFTWARE
    | SOF_TIMESTAMPING_SOFTWARE
    | SOF_TIMESTAMPING_OPT_ID
    | SOF_TIMESTAMPING_OPT_TSONLY
)
MSG_ERRQUEUE = 0x2000
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_TIMESTAMPING = 4
SCM_TSTAMP_SND = 0  # the driver handed the packet to the device
SCM_TSTAMP_SCHED = 1  # the packet entered the packet scheduler (a little earlier)
TIMESPEC = struct.Struct("=qq")
SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")  # errno, origin, type, code, pad, info, data
ANCILLARY_SPACE = 512  # room for a timestamp, an extended error and its offender address


@dataclass(frozen=True)
class TxStamp:
    key: int  # which send on this socket: 0 for the first
    kind: int  # SCM_TSTAMP_SND or SCM_TSTAMP_SCHED
    ns: int


def enable_sender_stamps(sock: socket.socket) -> bool:
    """Ask for kernel transmit and receive stamps; False where the kernel refuses."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SENDER_FLAGS)
    except OSError:
        return False
    return True


def enable_receive_stamps(sock: socket.socket) -> bool:
    """Ask for a kernel receive stamp on every datagram; False where the kernel refuses."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _timespec_ns(data: bytes, offset: int = 0) -> int:
    seconds, nanoseconds = TIMESPEC.unpack_from(data, offset)
    return seconds * 1_000_000_000 + nanoseconds


def receive_stamp(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive stamp (ns) among a received datagram's ancillary data."""
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET or len(data) < TIMESPEC.size:
            continue
        if kind in (SO_TIMESTAMPING, SO_TIMESTAMPNS):
            ns = _timespec_ns(data)  # SO_TIMESTAMPING: the software stamp is the first of three
            if ns > 0:
                return ns
    return None


def transmit_stamp(ancdata: list[tuple[int, int, bytes]]) -> TxStamp | None:
    """The transmit stamp carried by one error-queue message, None for any other message."""
    ns = None
    extended = None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= TIMESPEC.size:
            ns = _timespec_ns(data)
        elif (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            if len(data) >= SOCK_EXTENDED_ERR.size:
                extended = SOCK_EXTENDED_ERR.unpack_from(data)
    if ns is None or not ns or extended is None:
        return None
    _errno, origin, _type, _code, _pad, info, key = extended
    if origin != SO_EE_ORIGIN_TIMESTAMPING:
        return None
    return TxStamp(key, info, ns)
