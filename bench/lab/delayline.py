"""The lab's delay line: a userspace stand-in for netem (this kernel has no delaying qdisc).

Runs inside the lab's router namespace, attached to a persistent TUN device that policy routing
feeds with every forwarded packet.  Each packet is held for delay(src) + delay(dst) (each with
uniform +/- jitter, never below zero) and written back to the TUN, where the router's main table
sends it on to its destination.  So a node delayed by 10 ms sees about 20 ms more RTT.

    python -m talbench.bench.lab.delayline --tun tbdelay --delay 10.213.1.2=10:2 [--limit 10000]

Packets beyond ``--limit`` held at once are dropped (netem's limit).  Runs until SIGTERM/SIGINT.
The event loop waits in select(2), whose timeout has microsecond resolution (epoll's is a
millisecond), so a packet leaves within scheduling latency of its time.

A packet's time is counted from its arrival, as netem counts from the enqueue, not from when
this process got round to reading it: a packet socket on the TUN device sees every packet the
kernel hands the device, with the kernel's stamp, before the TUN read returns it.  Otherwise the
process's own wake-up latency would be added to some packets and not to others: a packet
answered inside this process's own write (the kernel's ICMP echo reply to a request it
released) is read at once, one a process answers later (a UDP reflector's) waits for a wake-up,
and the two flows would see different networks.
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
import socket
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from talbench.agents import timestamps

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEFAULT_LIMIT = 10000
MAX_PACKET = 65536
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # the kernel handing a packet to the device: into the TUN, for this process
STAMP_KEY = 64  # bytes of a packet that identify it (the IP header, ports, payload start)
STAMPS_KEPT = 20000  # arrival stamps waiting for their TUN read, at most


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


def open_arrivals(tun: str) -> socket.socket | None:
    """A non-blocking packet socket on ``tun`` that stamps what the kernel queues for this
    process; None where packet sockets are refused (then the read time stands in)."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(ETH_P_ALL))
    except OSError:
        return None
    try:
        sock.bind((tun, 0))
    except OSError:
        sock.close()
        return None
    if not timestamps.enable_receive_stamps(sock):
        sock.close()
        return None
    return sock


class Arrivals:
    """Arrival stamps (CLOCK_REALTIME, seconds) of the packets queued on the TUN, by content."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock
        self._stamps: dict[bytes, float] = {}
        self.stamped = 0  # packets whose arrival stamp was found
        self.unstamped = 0

    def drain(self) -> None:
        if self._sock is None:
            return
        for _ in range(1024):
            try:
                data, ancillary, _, address = self._sock.recvmsg(STAMP_KEY, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            stamp = timestamps.receive_stamp(ancillary)
            if address[2] != PACKET_OUTGOING or stamp is None:
                continue  # what this process wrote back, on its way out
            if len(self._stamps) >= STAMPS_KEPT:
                self._stamps.pop(next(iter(self._stamps)))  # the oldest: its read never came
            self._stamps[data[:STAMP_KEY]] = stamp / 1e9

    def waited(self, packet: bytes) -> float:
        """Seconds ``packet`` has been queued for this process (0 when its stamp is unknown)."""
        stamp = self._stamps.pop(packet[:STAMP_KEY], None)
        if stamp is None:
            self.unstamped += 1
            return 0.0
        self.stamped += 1
        return max(0.0, time.time() - stamp)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


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
    def __init__(
        self,
        fd: int,
        delays: Mapping[bytes, AddressDelay],
        *,
        limit: int,
        rng: random.Random,
        arrivals: Arrivals | None = None,
    ) -> None:
        self._fd = fd
        self.arrivals = arrivals or Arrivals(None)
        self._delays = dict(delays)
        self._limit = limit
        self._rng = rng
        self._held = 0
        self.forwarded = 0
        self.dropped = 0

    def on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        self.arrivals.drain()  # the kernel stamped them before the TUN read can return them
        for _ in range(256):  # bounded batch, then let timers run
            try:
                packet = os.read(self._fd, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped += 1
                return
            delay = packet_delay(packet, self._delays, self._rng)
            if delay > 0:
                delay = max(1e-6, delay - self.arrivals.waited(packet))
            else:
                self.arrivals.waited(packet)  # forget its stamp
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
    arrivals = Arrivals(open_arrivals(tun))
    line = DelayLine(fd, delays, limit=limit, rng=random.Random(), arrivals=arrivals)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(fd, line.on_readable, loop)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
        arrivals.close()
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
    arrivals = line.arrivals
    print(
        f"delayline: forwarded {line.forwarded} dropped {line.dropped}; "
        f"held from their arrival stamp {arrivals.stamped}, from the read {arrivals.unstamped}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
