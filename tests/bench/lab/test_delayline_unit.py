"""The delay line's per-packet arithmetic (the program itself is exercised by test_lab.py)."""

from __future__ import annotations

import ipaddress
import os
import random
import select
import socket
import subprocess
import sys
import time

import pytest

from talbench.bench.lab.delayline import (
    MAX_PACKET,
    AddressDelay,
    Arrivals,
    DelayLine,
    packet_delay,
    parse_address_delay,
)
from tests.bench.lab.delayline_helpers import DELAYS, ManualClock, ipv4_packet, running_loop, tun_stand_in


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


def _sent(network: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(network.recv(MAX_PACKET))
        except BlockingIOError:
            return out


def test_a_packet_is_held_from_its_arrival_not_from_when_it_was_read():
    """A packet that waited 4 ms for the delay line to wake up leaves 10 ms after it arrived,
    not 14 ms: the line's own wake-up latency is no part of the network it emulates."""
    with tun_stand_in() as (fd, network):
        clock = ManualClock()
        line = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1), arrivals=_Queued(0.004), clock=clock)
        network.send(ipv4_packet("10.213.0.10", "10.213.1.2"))
        assert line.receive() == 1
        assert line.next_due == pytest.approx(100.006)
        late = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1), arrivals=_Queued(0.050), clock=clock)
        network.send(ipv4_packet("10.213.0.10", "10.213.1.2"))
        late.receive()
        assert late.next_due is not None and late.next_due < clock.now  # already overdue
        assert late.release(clock.now) == 1 and len(_sent(network)) == 1  # out at the next release


def test_every_due_packet_leaves_in_one_release_earliest_first_equal_dues_in_arrival_order():
    """Whatever their protocol, packets leave by due time; those due together leave together,
    in the order they came (a burst of two flows' packets is not reordered)."""
    with tun_stand_in() as (fd, network):
        clock = ManualClock()
        line = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1), clock=clock)
        first = ipv4_packet("10.213.0.10", "10.213.1.2", protocol=1)  # ICMP, 10 ms
        second = ipv4_packet("10.213.0.11", "10.213.1.2", protocol=17)  # UDP, 10 ms, same due
        early = ipv4_packet("10.213.0.10", "10.213.2.2", protocol=17)  # 3 ms
        for packet in (first, second, early):
            network.send(packet)
        assert line.receive() == 3 and line.held == 3
        assert line.release(100.002) == 0 and _sent(network) == []
        assert line.release(100.004) == 1 and _sent(network) == [early]
        assert line.release(100.010) == 2 and _sent(network) == [first, second]
        assert line.held == 0 and line.forwarded == 3


def test_a_release_falling_due_goes_before_the_next_read():
    """A packet read while another is about to leave would make that one late by the read's
    cost: the read waits (its packet keeps its arrival stamp), the release goes first."""
    with tun_stand_in() as (fd, network):
        clock = ManualClock()
        line = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1), arrivals=_Queued(0.0099), clock=clock)
        network.send(ipv4_packet("10.213.0.10", "10.213.1.2"))
        assert line.receive(margin_s=200e-6) == 1  # due in 0.1 ms
        network.send(ipv4_packet("10.213.0.11", "10.213.1.2"))
        assert line.receive(margin_s=200e-6) == 0 and line.held == 1
        assert line.receive(margin_s=50e-6) == 1 and line.held == 2  # a read fits before it


def test_a_release_waits_out_its_last_stretch_on_the_cpu_and_never_leaves_early():
    with tun_stand_in() as (fd, network):
        clock = ManualClock(step=10e-6)
        line = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1), arrivals=_Queued(0.0), clock=clock)
        network.send(ipv4_packet("10.213.0.10", "10.213.2.2"))  # 3 ms
        line.receive()
        due = line.next_due
        assert due is not None
        assert line.release_next(spin_s=1e-3) == 0 and _sent(network) == []  # 3 ms away: sleep first
        clock.now = due - 0.5e-3
        assert line.release_next(spin_s=1e-3) == 1
        assert due <= clock.now < due + 20e-6  # spun to its time: out neither before nor much after
        assert len(_sent(network)) == 1


def test_the_loop_releases_each_packet_at_its_time_and_stops_when_asked():
    """The real loop on a real clock: every packet out, none before its time; a stop request
    (what SIGTERM's handler makes) ends it without waiting for the held packets."""
    with tun_stand_in() as (fd, network):
        line = DelayLine(fd, DELAYS, limit=10, rng=random.Random(1))
        with running_loop(line, fd) as stop:
            sent = {}
            for n in range(20):
                packet = ipv4_packet("10.213.0.10", "10.213.2.2", ident=n)  # 3 ms
                sent[packet] = time.monotonic()
                network.send(packet)
                time.sleep(0.001)
            deadline = time.monotonic() + 5
            received: dict[bytes, float] = {}
            while len(received) < len(sent) and time.monotonic() < deadline:
                if select.select([network], [], [], 0.1)[0]:
                    received[network.recv(MAX_PACKET)] = time.monotonic()
            assert received.keys() == sent.keys()
            assert all(received[p] - sent[p] >= 0.003 for p in sent)
            network.send(ipv4_packet("10.213.0.10", "10.213.1.2"))
            time.sleep(0.002)
            assert stop()
            assert line.held == 1  # stopped before its 10 ms were up


@pytest.mark.processes
@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root (CAP_SYS_NICE)")
def test_the_delay_line_runs_under_sched_fifo_unless_told_not_to():
    code = (
        "import os, sys; from talbench.bench.lab.delayline import prioritise; "
        "print(prioritise(int(sys.argv[1]))); print(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)"
    )
    for priority, policy in ((20, os.SCHED_FIFO), (0, os.SCHED_OTHER)):
        done = subprocess.run([sys.executable, "-c", code, str(priority)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        said, scheduled = done.stdout.splitlines()
        assert scheduled == f"{policy} {priority}", (said, scheduled)
