"""How the lab's delay line (bench/lab/delayline.py) keeps time: real-time scheduling, no timer
slack, and a bound on the CPU it spends spinning to a release's exact time."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable

DEFAULT_SPIN_SHARE = 0.25  # of one core, at most, spent spinning (per SPIN_WINDOW_S)
SPIN_WINDOW_S = 1.0
PR_SET_TIMERSLACK = 29


class SpinBudget:
    """How much of one core the line may spend spinning: ``share`` of each ``window_s``.  Traffic
    whose releases come less than a spin apart (a throughput test through a delayed node) would
    otherwise keep a real-time process spinning without end and starve the lab's agents on a small
    host; past its budget the line sleeps to each release's time (later by a wake-up) until the
    next window."""

    def __init__(self, share: float, window_s: float = SPIN_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.share, self.window_s, self._clock = share, window_s, clock
        self._start, self._spent = clock(), 0.0
        self.refused = 0  # releases that slept instead

    def allows(self) -> bool:
        now = self._clock()
        if now - self._start >= self.window_s:
            self._start, self._spent = now, 0.0
        if self._spent < self.share * self.window_s:
            return True
        self.refused += 1
        return False

    def spend(self, seconds: float) -> None:
        self._spent += seconds


def prioritise(priority: int) -> str:
    """Run this process under SCHED_FIFO at ``priority`` (0: leave it as it is), so a release
    never waits for another process's time slice; where refused, no timer slack at least."""
    if priority <= 0:
        return "scheduling left as it was"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        _no_timer_slack()
        return f"SCHED_FIFO refused ({exc.strerror}): normal scheduling, no timer slack"
    return f"SCHED_FIFO priority {priority}"


def _no_timer_slack() -> None:
    """A normal process's sleeps end up to 50 us late (timer slack): ask for 1 ns."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
