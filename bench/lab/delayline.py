"""The lab's delay line: a userspace stand-in for netem (this kernel has no delaying qdisc).

Runs inside the lab's router namespace, attached to a persistent TUN device that policy routing
feeds with every forwarded packet.  Each packet is held for delay(src) + delay(dst) (each with
uniform +/- jitter, never below zero) and written back to the TUN, where the router's main table
sends it on to its destination.  So a node delayed by 10 ms sees about 20 ms more RTT.

    python -m talbench.bench.lab.delayline --tun tbdelay --delay 10.213.1.2=10:2 [--limit 10000]

Packets beyond ``--limit`` held at once are dropped (netem's limit).  Runs until SIGTERM/SIGINT.

Every packet is released alike, close to its time, whatever its protocol: held packets wait in
one queue by due time (equal dues in arrival order) and each release writes every packet due.
The loop sleeps in select(2) (a timeout in microseconds; epoll's is a millisecond) until a packet
arrives or the next release is ``--spin-us`` away, then waits out the rest on the CPU: a sleeper
wakes late by the scheduler's whim (on a busy guest with a non-preemptible kernel, now and then
by milliseconds, even under SCHED_FIFO: docs/measurements.md), a spinning process
does not (at most ``--spin-share`` of a core: past it a release sleeps to its time, so traffic
that would keep it spinning cannot starve the lab's agents).  The process asks for SCHED_FIFO (``--priority``) so no other process's time slice
stands between a due packet and its release, and no read starts when a release falls due within
a read's cost: the release goes first.  Otherwise a read now and then makes a release late,
and whichever flow's packets happen to meet those releases shows the longer tail: two flows
through the same line, alike in every other way, would read different p99s.

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
import contextlib
import fcntl
import heapq
import ipaddress
import itertools
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from talbench.agents.net import timestamps
from talbench.bench.lab.delayline_timing import DEFAULT_SPIN_SHARE, SpinBudget, prioritise

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEFAULT_LIMIT = 10000
MAX_PACKET = 65536
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # the kernel handing a packet to the device: into the TUN, for this process
STAMP_KEY = 64  # bytes of a packet that identify it (the IP header, ports, payload start)
STAMPS_KEPT = 20000  # arrival stamps waiting for their TUN read, at most
READ_BATCH = 256  # packets read per wake-up at most, then the releases' turn
READ_MARGIN_S = 200e-6  # no read started when a release falls due sooner than this (a read's cost)
DEFAULT_SPIN_US = 1000.0  # a release's last stretch spent on the CPU rather than asleep
DEFAULT_PRIORITY = 20  # SCHED_FIFO: above every normal process, below threaded interrupts (50)
ERROR_PAUSE_S = 0.01
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    """Packets read from ``fd`` held in a queue by due time (monotonic seconds) and written back
    to ``fd`` when due: every packet alike, whatever its protocol or who answers it."""

    def __init__(
        self,
        fd: int,
        delays: Mapping[bytes, AddressDelay],
        *,
        limit: int,
        rng: random.Random,
        arrivals: Arrivals | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fd = fd
        self.arrivals = arrivals or Arrivals(None)
        self._delays = dict(delays)
        self._limit = limit
        self._rng = rng
        self._clock = clock
        self._queue: list[tuple[float, int, bytes]] = []  # (due, arrival order, packet): a heap
        self._order = itertools.count()
        self.forwarded = 0
        self.dropped = 0
        self.errors = 0  # failed TUN reads

    @property
    def held(self) -> int:
        return len(self._queue)

    @property
    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def receive(self, margin_s: float = 0.0) -> int:
        """Read what the TUN holds (a bounded batch) and queue each packet for its time.  Stops
        early when a queued packet falls due within ``margin_s``: its release comes first, and a
        packet left unread keeps its arrival stamp.  Returns how many packets were read."""
        self.arrivals.drain()  # the kernel stamped them before the TUN read can return them
        read = 0
        while read < READ_BATCH:
            due = self.next_due
            if due is not None and due - self._clock() <= margin_s:
                break
            try:
                packet = os.read(self._fd, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.errors += 1
                break
            read += 1
            delay = packet_delay(packet, self._delays, self._rng)
            waited = self.arrivals.waited(packet)  # always taken: a stamp left behind goes stale
            if delay <= 0:
                self._write(packet)
            elif len(self._queue) >= self._limit:
                self.dropped += 1
            else:
                due = self._clock() - waited + delay  # from its arrival, not from this read
                heapq.heappush(self._queue, (due, next(self._order), packet))
        return read

    def release(self, now: float) -> int:
        """Write every packet due by ``now``: earliest due first, equal dues in arrival order."""
        released = 0
        while self._queue and self._queue[0][0] <= now:
            self._write(heapq.heappop(self._queue)[2])
            released += 1
        return released

    def release_next(self, spin_s: float) -> int:
        """When the next packet falls due within ``spin_s``: wait for its time on the CPU (a
        sleep's wake-up is later than a spin's, by a scheduler's whim) and release what is due."""
        due = self.next_due
        if due is None:
            return 0
        now = self._clock()
        if due - now > spin_s:
            return 0
        while now < due:
            now = self._clock()
        return self.release(now)

    def _write(self, packet: bytes) -> None:
        try:
            os.write(self._fd, packet)
            self.forwarded += 1
        except OSError:
            self.dropped += 1


def run(
    line: DelayLine,
    fd: int,
    wake_fd: int,
    stopping: Callable[[], bool],
    spin_s: float,
    budget: SpinBudget | None = None,
) -> None:
    """The delay line's loop until ``stopping()``: sleep in select(2) (a timeout in microseconds)
    until a packet arrives or the next release is ``spin_s`` away, then spin to its time (while
    ``budget`` allows; then sleep to it)."""
    budget = budget or SpinBudget(DEFAULT_SPIN_SHARE)
    while not stopping():
        spin = spin_s if budget.allows() else 0.0
        due = line.next_due
        timeout = None if due is None else max(0.0, due - time.monotonic() - spin)
        readable = select.select([fd, wake_fd], [], [], timeout)[0]
        if wake_fd in readable:
            with contextlib.suppress(OSError):
                os.read(wake_fd, 512)
        if fd in readable:
            errors = line.errors
            line.receive(min(spin, READ_MARGIN_S))
            if line.errors != errors:
                time.sleep(ERROR_PAUSE_S)  # a TUN that fails its reads stays readable: no busy loop
        started = time.monotonic()
        line.release_next(spin)
        budget.spend(time.monotonic() - started)


def serve(
    tun: str, delays: Mapping[bytes, AddressDelay], limit: int, spin_s: float, spin_share: float = DEFAULT_SPIN_SHARE
) -> DelayLine:
    """Attach to ``tun`` and run until SIGTERM/SIGINT; returns the line (its counters)."""
    fd = open_tun(tun)
    arrivals = Arrivals(open_arrivals(tun))
    line = DelayLine(fd, delays, limit=limit, rng=random.Random(), arrivals=arrivals)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stop: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _: stop.append(signum)) for signum in STOP_SIGNALS}
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    try:
        run(line, fd, wake_read, lambda: bool(stop), spin_s, SpinBudget(spin_share))
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for each in (fd, wake_read, wake_write):
            os.close(each)
        arrivals.close()
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talbench-delayline", description=__doc__.splitlines()[0])
    parser.add_argument("--tun", required=True, help="persistent TUN device to attach to")
    parser.add_argument("--delay", action="append", default=[], metavar="ADDR=MS[:JITTER_MS]")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most packets held at once")
    parser.add_argument(
        "--spin-us", type=float, default=DEFAULT_SPIN_US, help="wait out each release's last microseconds spinning"
    )
    parser.add_argument(
        "--spin-share",
        type=float,
        default=DEFAULT_SPIN_SHARE,
        help="of one core at most spent spinning (beyond it releases sleep to their time)",
    )
    parser.add_argument(
        "--priority", type=int, default=DEFAULT_PRIORITY, help="SCHED_FIFO priority (0: normal scheduling)"
    )
    args = parser.parse_args(argv)
    try:
        delays = dict(parse_address_delay(text) for text in args.delay)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"delayline: {prioritise(args.priority)}", file=sys.stderr)
    started = time.monotonic()
    line = serve(
        args.tun, delays, max(1, args.limit), max(0.0, args.spin_us) / 1e6, min(1.0, max(0.0, args.spin_share))
    )
    arrivals, used = line.arrivals, os.times()
    print(
        f"delayline: forwarded {line.forwarded} dropped {line.dropped} read errors {line.errors}; "
        f"held from their arrival stamp {arrivals.stamped}, from the read {arrivals.unstamped}; "
        f"CPU {used.user + used.system:.1f}s in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
