"""What the `talbench` commands share (bench/cli/run.py, bench/cli/commands.py): the event loop
that Ctrl-C and SIGTERM interrupt without cutting cleanup short, and where the lab lives."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

DEFAULT_LAB_ROOT = "/var/tmp/talbench/labs"

T = TypeVar("T")


def lab_root(args: argparse.Namespace) -> Path:
    """--lab-root, else $TALBENCH_LAB_ROOT, else DEFAULT_LAB_ROOT."""
    return args.lab_root or Path(os.environ.get("TALBENCH_LAB_ROOT", DEFAULT_LAB_ROOT))


def run_async(coro: Coroutine[Any, Any, T], err: Console) -> T:
    """Run ``coro``; SIGINT/SIGTERM cancel it once (its finally blocks clean up), further signals
    during cleanup are acknowledged but do not cut the cleanup short."""

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupted: list[bool] = []

        def on_signal() -> None:
            if interrupted:
                err.print("talbench: still cleaning up, please wait", markup=False)
                return
            interrupted.append(True)
            err.print("talbench: interrupted, cleaning up", markup=False)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await coro
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(guarded())
