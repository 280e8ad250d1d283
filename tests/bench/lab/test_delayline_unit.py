"""The delay line's per-packet arithmetic (the program itself is exercised by test_lab.py)."""

from __future__ import annotations

import ipaddress
import os
import random
import struct

import pytest

from talbench.bench.lab.delayline import AddressDelay, Arrivals, DelayLine, packet_delay, parse_address_delay


def ipv4_packet(src: str, dst: str) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        28,
        1,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + b"\0" * 8


def test_delay_is_the_sum_of_source_and_destination_delays():
    delays = dict([parse_address_delay("10.213.1.2=10"), parse_address_delay("10.213.2.2=3")])
    rng = random.Random(1)
    assert packet_delay(ipv4_packet("10.213.0.10", "10.213.1.2"), delays, rng) == 0.010
    assert packet_delay(ipv4_packet("10.213.1.2", "10.213.0.10"), delays, rng) == 0.010
    assert abs(packet_delay(ipv4_packet("10.213.1.2", "10.213.2.2"), delays, rng) - 0.013) < 1e-12
    assert packet_delay(ipv4_packet("10.213.0.10", "10.213.0.11"), delays, rng) == 0.0


def test_jitter_is_uniform_around_the_delay_and_never_negative():
    delays = {ipaddress.IPv4Address("10.213.1.2").packed: AddressDelay(0.010, 0.004)}
    rng = random.Random(7)
    samples = [packet_delay(ipv4_packet("10.213.0.10", "10.213.1.2"), delays, rng) for _ in range(2000)]
    assert 0.006 <= min(samples) < 0.0065 and 0.0135 < max(samples) <= 0.014
    assert abs(sum(samples) / len(samples) - 0.010) < 0.0003
    big = {ipaddress.IPv4Address("10.213.1.2").packed: AddressDelay(0.001, 0.001)}
    assert min(packet_delay(ipv4_packet("10.213.0.10", "10.213.1.2"), big, rng) for _ in range(500)) >= 0.0


def test_anything_but_ipv4_passes_undelayed():
    delays = {ipaddress.IPv4Address("10.213.1.2").packed: AddressDelay(0.010)}
    assert packet_delay(b"\x60" + b"\0" * 39, delays, random.Random()) == 0.0
    assert packet_delay(b"\x45\0", delays, random.Random()) == 0.0


class _Queued(Arrivals):
    """Arrival stamps as if each packet had waited ``seconds`` in the TUN queue before the read."""

    def __init__(self, seconds: float) -> None:
        super().__init__(None)
        self.seconds = seconds

    def waited(self, packet: bytes) -> float:
        return self.seconds


class _Loop:
    def __init__(self) -> None:
        self.held: list[float] = []

    def call_later(self, delay: float, *args: object) -> None:
        self.held.append(delay)


def test_a_packet_is_held_from_its_arrival_not_from_when_it_was_read():
    """A packet that waited 4 ms for the delay line to wake up leaves 10 ms after it arrived,
    not 14 ms: the line's own wake-up latency is no part of the network it emulates."""
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
        delays = dict([parse_address_delay("10.213.1.2=10")])
        loop = _Loop()
        line = DelayLine(read, delays, limit=10, rng=random.Random(1), arrivals=_Queued(0.004))
        os.write(write, ipv4_packet("10.213.0.10", "10.213.1.2"))
        line.on_readable(loop)  # type: ignore[arg-type]
        assert loop.held == [pytest.approx(0.006)]
        late = DelayLine(read, delays, limit=10, rng=random.Random(1), arrivals=_Queued(0.050))
        os.write(write, ipv4_packet("10.213.0.10", "10.213.1.2"))
        late.on_readable(loop)  # type: ignore[arg-type]
        assert 0 < loop.held[-1] < 1e-3  # already overdue: out at once, never before it came
    finally:
        os.close(read)
        os.close(write)
