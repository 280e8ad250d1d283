"""TWAMP-light stamps: kernel timestamps at both ends and the reflector's dwell taken out, so a
stalled sender or reflector is not network delay.  Real UDP sockets on 127.0.0.1; the stalls are
real too (an event loop blocked by time.sleep, as a CPU-starved agent's is)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from talbench.agents.net.echo import EchoResponder, start_echo
from talbench.agents.probes.rtt.probe import PROBE, measure

RTT_JOB = PROBE.jobs[0]
STALL_S, EVERY_S = 0.02, 0.03  # the stalled loop sleeps 20 ms out of every 30 ms


def params(port: int, count: int = 60, interval: float = 0.005) -> Any:
    return RTT_JOB.parse(
        {
            "peers": [{"name": "peer", "host": "127.0.0.1", "port": port}],
            "count": count,
            "warmup": 2,
            "interval": interval,
            "jitter": 0.3,
            "stagger": 0,
            "timeout": 0.5,
        }
    )


def four_stamps(peer: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(T1, T2, T3, T4) of every sample, rebuilt from the result as its docstring says."""
    stamps = []
    for rtt, dwell, t1, t2 in zip(peer["samples_ns"], peer["dwell_ns"], peer["t1_ns"], peer["t2_ns"], strict=True):
        t1_abs, t2_abs = peer["t1_base_ns"] + t1, peer["t2_base_ns"] + t2
        stamps.append((t1_abs, t2_abs, t2_abs + dwell, t1_abs + rtt + dwell))
    return stamps


def stall_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Block ``loop`` for STALL_S out of every EVERY_S, as a CPU quota does to a starved agent."""

    def stall() -> None:
        time.sleep(STALL_S)
        loop.call_later(EVERY_S - STALL_S, stall)

    loop.call_soon(stall)


@contextlib.contextmanager
def reflector_in_thread(*, stalled: bool) -> Iterator[EchoResponder]:
    """An echo responder on its own event loop in a thread, its loop stalled if asked."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: list[EchoResponder] = []

    async def serve() -> None:
        holder.append(await start_echo("127.0.0.1", 0))
        if stalled:
            stall_loop(asyncio.get_running_loop())
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(holder[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def p99(values: list[int]) -> int:
    return sorted(values)[int(0.99 * (len(values) - 1))]


async def test_every_stamp_is_the_kernels_and_the_four_stamps_are_kept(tmp_path):
    with reflector_in_thread(stalled=False) as echo:
        result = await measure(params(echo.address[1]), None)  # type: ignore[arg-type]
    peer = result["peers"]["peer"]
    n = len(peer["samples_ns"])
    assert n == peer["received"] == 60 and peer["lost"] == 0
    assert peer["stamps"] == {"t1_kernel": n, "t2_kernel": n, "t4_kernel": n, "reflected": n}
    for t1, t2, t3, t4 in four_stamps(peer):
        assert t1 < t4 and t2 <= t3 and t4 - t1 >= t3 - t2
    assert p99(peer["samples_ns"]) < 5_000_000  # loopback


async def test_a_stalled_reflector_is_its_dwell_not_network_delay():
    """The reflector's loop sleeps 20 ms of every 30: replies leave up to 20 ms late.  The round
    trips it adds are the reflector's dwell, kept as a figure of its own; the RTT stays loopback's."""
    with reflector_in_thread(stalled=True) as echo:
        result = await measure(params(echo.address[1]), None)  # type: ignore[arg-type]
    peer = result["peers"]["peer"]
    assert peer["received"] == 60 and peer["lost"] == 0
    raw = [t4 - t1 for t1, _, _, t4 in four_stamps(peer)]
    assert max(raw) >= 10_000_000, "the stall never held a reply: the test measured nothing"
    assert max(peer["dwell_ns"]) >= 10_000_000
    assert p99(peer["samples_ns"]) < 5_000_000, sorted(peer["samples_ns"])[-5:]


async def test_a_stalled_sender_does_not_stretch_its_round_trips():
    """The sender's own loop sleeps 20 ms of every 30: replies wait in its socket, sends go out
    late.  Kernel stamps (T1 on transmit, T4 on arrival) do not move with it."""
    with reflector_in_thread(stalled=False) as echo:
        loop = asyncio.get_running_loop()
        stalling = asyncio.Event()

        def stall() -> None:
            if stalling.is_set():
                return
            time.sleep(STALL_S)
            loop.call_later(EVERY_S - STALL_S, stall)

        loop.call_soon(stall)
        try:
            result = await measure(params(echo.address[1]), None)  # type: ignore[arg-type]
        finally:
            stalling.set()
    peer = result["peers"]["peer"]
    assert peer["received"] == 60 and peer["lost"] == 0
    assert peer["send_lag_max_ms"] >= 10, "the stall never delayed the sender: the test measured nothing"
    assert peer["stamps"]["t1_kernel"] == peer["stamps"]["t4_kernel"] == 60
    assert p99(peer["samples_ns"]) < 5_000_000, sorted(peer["samples_ns"])[-5:]
