"""Live progress for long runs, on stderr: a rich live display on a terminal, plain timestamped
lines otherwise (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class LineProgress:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._t0 = time.monotonic()

    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None:
        count = f" {done}/{total}" if done is not None and total is not None else ""
        self._stream.write(f"[{time.monotonic() - self._t0:7.1f}s] {task}{count}{': ' + note if note else ''}\n")
        self._stream.flush()


class RichProgress:
    """Use as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[name]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._totals: dict[str, float] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None:
        if task not in self._tasks:
            self._tasks[task] = self._progress.add_task(task, name=task, note=note, total=total)
        task_id = self._tasks[task]
        bar_total: float | None = total
        completed: float | None = done
        if total is not None:
            self._totals[task] = total
        if note == "done":  # a finished task shows a full bar, whatever it counted
            bar_total = completed = self._totals.get(task) or 1
        # None leaves a figure as it was
        self._progress.update(task_id, total=bar_total, completed=completed, note=note)
