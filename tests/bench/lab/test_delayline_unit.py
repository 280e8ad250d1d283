"""The delay line's per-packet arithmetic (the program itself is exercised by test_lab.py)."""

from __future__ import annotations

import ipaddress
import random
import struct

from talbench.bench.lab.delayline import AddressDelay, packet_delay, parse_address_delay


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
