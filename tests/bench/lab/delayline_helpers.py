"""What the delay line's tests share (test_delayline_unit.py, test_delayline_timing.py): IPv4
packets to delay, the lab's delays by address, a clock the test moves, a socket pair standing in
for the TUN and the line's real loop in a thread."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from talbench.bench.lab.delayline import DelayLine, parse_address_delay, run

DELAYS = dict([parse_address_delay("10.213.1.2=10"), parse_address_delay("10.213.2.2=3")])


def ipv4_packet(src: str, dst: str, *, protocol: int = 17, ident: int = 1) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        28,
        ident,
        0,
        64,
        protocol,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + b"\0" * 8


class ManualClock:
    """A monotonic clock that moves only when told to (``step`` on every reading)."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.step
        return self.now


@contextmanager
def tun_stand_in() -> Iterator[tuple[int, socket.socket]]:
    """A datagram socket pair standing in for the TUN: (the line's fd, the network's end)."""
    line_end, network = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    line_end.setblocking(False)
    network.setblocking(False)
    try:
        yield line_end.fileno(), network
    finally:
        line_end.close()
        network.close()


@contextmanager
def running_loop(line: DelayLine, fd: int, *budget: Any) -> Iterator[Callable[[], bool]]:
    """The real loop of ``line`` in a thread; yields ``stop()``, which ends it as SIGTERM's
    handler does and says whether it ended (the loop is stopped on the way out regardless)."""
    wake_read, wake_write = os.pipe()
    stopping = threading.Event()
    loop = threading.Thread(target=run, args=(line, fd, wake_read, stopping.is_set, 1e-3, *budget))
    loop.start()

    def stop() -> bool:
        stopping.set()
        os.write(wake_write, b"\0")
        loop.join(timeout=2)
        return not loop.is_alive()

    try:
        yield stop
    finally:
        stop()
        os.close(wake_read)
        os.close(wake_write)
