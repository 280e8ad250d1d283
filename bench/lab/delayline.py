"""The lab's delay line: a userspace stand-in for netem (this kernel has no delaying qdisc).

Runs inside the lab's router namespace, attached to a persistent TUN device that policy routing
feeds with every forwarded packet.  Each packet is held for delay(src) + delay(dst) (each with
uniform +/- jitter, never below zero) and written back to the TUN, where the router's main table
sends it on to its destination.  So a node delayed by 10 ms sees about 20 ms more RTT.

    python -m talbench.bench.lab.delayline --tun tbdelay --delay 10.213.1.2=10:2 [--limit 10000]

Packets beyond ``--limit`` held at once are dropped (netem's limit).  Runs until SIGTERM/SIGINT.
The event loop waits in select(2), whose timeout has microsecond resolution (epoll's is a
millisecond), so a packet leaves within scheduling latency of its time.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import os
import random
import selectors
import signal
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEFAULT_LIMIT = 10000
MAX_PACKET = 65536


@dataclass(frozen=True)
class AddressDelay:
    delay_s: float
    jitter_s: float = 0.0


def parse_address_delay(text: str) -> tuple[bytes, AddressDelay]:
    """``10.213.1.2=10:2`` (milliseconds) -> (packed address, AddressDelay)."""
    address, _, value = text.partition("=")
    delay_text, _, jitter_text = value.partition(":")
    delay_ms, jitter_ms = float(delay_text), float(jitter_text or 0)
    if not (0 <= delay_ms <= 60_000 and 0 <= jitter_ms <= 60_000):
        raise ValueError(f"delay out of range: {text}")
    return ipaddress.IPv4Address(address).packed, AddressDelay(delay_ms / 1000.0, jitter_ms / 1000.0)


def packet_delay(packet: bytes, delays: Mapping[bytes, AddressDelay], rng: random.Random) -> float:
    """Seconds to hold ``packet``: delay(src) + delay(dst); 0 for anything but IPv4."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return 0.0
    total = 0.0
    for address in (packet[12:16], packet[16:20]):
        entry = delays.get(address)
        if entry is not None:
            jitter = rng.uniform(-entry.jitter_s, entry.jitter_s) if entry.jitter_s else 0.0
            total += max(0.0, entry.delay_s + jitter)
    return total


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device ``name``; returns a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class DelayLine:
    def __init__(self, fd: int, delays: Mapping[bytes, AddressDelay], *, limit: int, rng: random.Random) -> None:
        self._fd = fd
        self._delays = dict(delays)
        self._limit = limit
        self._rng = rng
        self._held = 0
        self.forwarded = 0
        self.dropped = 0

    def on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        for _ in range(256):  # bounded batch, then let timers run
            try:
                packet = os.read(self._fd, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped += 1
                return
            delay = packet_delay(packet, self._delays, self._rng)
            if delay <= 0:
                self._write(packet, held=False)
            elif self._held >= self._limit:
                self.dropped += 1
            else:
                self._held += 1
                loop.call_later(delay, self._write, packet, True)

    def _write(self, packet: bytes, held: bool) -> None:
        if held:
            self._held -= 1
        try:
            os.write(self._fd, packet)
            self.forwarded += 1
        except OSError:
            self.dropped += 1


async def serve(tun: str, delays: Mapping[bytes, AddressDelay], limit: int) -> DelayLine:
    loop = asyncio.get_running_loop()
    fd = open_tun(tun)
    line = DelayLine(fd, delays, limit=limit, rng=random.Random())
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(fd, line.on_readable, loop)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talbench-delayline", description=__doc__.splitlines()[0])
    parser.add_argument("--tun", required=True, help="persistent TUN device to attach to")
    parser.add_argument("--delay", action="append", default=[], metavar="ADDR=MS[:JITTER_MS]")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most packets held at once")
    args = parser.parse_args(argv)
    try:
        delays = dict(parse_address_delay(text) for text in args.delay)
    except ValueError as exc:
        parser.error(str(exc))
    # select(2) takes its timeout in microseconds, epoll in milliseconds (rounded up): with epoll
    # every held packet left up to 1 ms late, an error of its own on top of the delay asked for
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        line = runner.run(serve(args.tun, delays, max(1, args.limit)))
    print(f"delayline: forwarded {line.forwarded} dropped {line.dropped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
