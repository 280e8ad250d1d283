"""Child processes the agent's probes start with ``sh`` (iperf3, wireguard-go): die with the
agent, and are stopped and reaped within a bound."""

from __future__ import annotations

import asyncio
import ctypes
import signal

import sh

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: preexec_fn must not load libraries


def set_parent_death_signal() -> None:
    """``preexec_fn``: the kernel kills the child when the agent dies, even by SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def set_parent_death_term() -> None:
    """``preexec_fn``: SIGTERM to the child when the agent dies, so it can clean up after
    itself (wireguard-go removes its link and control socket)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def is_running(proc: sh.RunningCommand) -> bool:
    return bool(proc.process.is_alive()[0])


async def kill_and_reap(proc: sh.RunningCommand, *, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is reaped (or
    after a bounded wait when even SIGKILL did not end it)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not is_running(proc):
            break
        try:
            proc.signal(sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(asyncio.shield(_finished(proc)), wait)
            break
        except TimeoutError:
            continue
    if not is_running(proc):
        try:
            await asyncio.wait_for(_finished(proc), 2.0)  # output threads done, exit status collected
        except TimeoutError:
            pass


async def _finished(proc: sh.RunningCommand) -> None:
    try:
        await proc
    except sh.ErrorReturnCode:
        pass
