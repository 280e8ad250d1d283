"""The delay line's spin budget (bench/lab/delayline_timing.py): spinning to a release's exact
time costs CPU, and a stream of releases closer together than a spin must not turn the real-time
line into a busy loop that starves the lab's agents."""

from __future__ import annotations

import random
import select
import time

from talbench.bench.lab.delayline import MAX_PACKET, DelayLine
from talbench.bench.lab.delayline_timing import SpinBudget
from tests.bench.lab.delayline_helpers import DELAYS, ManualClock, ipv4_packet, running_loop, tun_stand_in


def test_a_budget_allows_spinning_up_to_its_share_of_each_window():
    clock = ManualClock(now=10.0)
    budget = SpinBudget(0.25, window_s=1.0, clock=clock)
    assert budget.allows()
    budget.spend(0.2)
    assert budget.allows()
    budget.spend(0.06)  # 0.26 s of a 1 s window spent
    assert not budget.allows() and budget.refused == 1
    clock.now += 1.0  # a new window
    assert budget.allows()


def _stream(spin_share: float, count: int = 300, gap_s: float = 0.0005) -> tuple[SpinBudget, list[float]]:
    """``count`` packets 0.5 ms apart through a line spinning 1 ms before each release: without a
    budget it would spin all the time.  Returns the budget and how late past its 3 ms each left."""
    budget = SpinBudget(spin_share)
    with tun_stand_in() as (fd, network):
        line = DelayLine(fd, DELAYS, limit=count + 1, rng=random.Random(1))
        sent: dict[bytes, float] = {}
        received: dict[bytes, float] = {}
        with running_loop(line, fd, budget):
            for n in range(count):
                packet = ipv4_packet("10.213.0.10", "10.213.2.2", ident=n)  # held 3 ms
                sent[packet] = time.monotonic()
                network.send(packet)
                time.sleep(gap_s)
                while select.select([network], [], [], 0)[0]:
                    received[network.recv(MAX_PACKET)] = time.monotonic()
            deadline = time.monotonic() + 5
            while len(received) < count and time.monotonic() < deadline:
                if select.select([network], [], [], 0.1)[0]:
                    received[network.recv(MAX_PACKET)] = time.monotonic()
    assert received.keys() == sent.keys()  # every packet out, budget or not
    return budget, [received[p] - sent[p] - 0.003 for p in sent]


def test_past_its_budget_the_line_sleeps_to_each_release_and_still_releases_all_on_time():
    budget, late = _stream(spin_share=0.02)
    assert budget.refused > 0  # the stream would have kept it spinning: it slept instead
    assert min(late) >= 0  # never before its time
