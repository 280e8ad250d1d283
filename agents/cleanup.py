"""The agent's CleanupRegistry (see probe.CleanupRegistry): things probes leave running between
jobs, registered per run id and released on DELETE /v1/runs/{run_id} and on shutdown.

Releases run newest first (like a stack), each bounded in time; one failing or hanging release
is logged and does not stop the others.  A run whose coordinator vanished (no job of it for
``idle_runs``' time) is released by the app's reaper.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Release = Callable[[], Awaitable[None]]

DEFAULT_RELEASE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Releasable:
    run_id: str
    name: str
    release: Release


@dataclass(frozen=True)
class ReleaseReport:
    released: tuple[str, ...]  # released without error
    failed: tuple[str, ...]  # raised or timed out (logged)


class Cleanups:
    """Implements agents.probe.CleanupRegistry, plus ``release_run`` and ``release_all``."""

    def __init__(self, *, release_timeout: float = DEFAULT_RELEASE_TIMEOUT) -> None:
        self._release_timeout = release_timeout
        self._items: list[Releasable] = []  # in registration order
        self._last_used: dict[str, float] = {}  # run id -> time.monotonic() of its last activity

    def add(self, run_id: str, name: str, release: Release) -> None:
        if any(item.run_id == run_id and item.name == name for item in self._items):
            raise ValueError(f"cleanup {name!r} already registered for run {run_id}")
        self._items.append(Releasable(run_id, name, release))
        self.touch(run_id)

    def touch(self, run_id: str) -> None:
        """Note activity of ``run_id`` (a job started or ended): it is not abandoned.  Only runs
        holding something are tracked."""
        if any(item.run_id == run_id for item in self._items):
            self._last_used[run_id] = time.monotonic()

    def idle_runs(self, idle_for: float, busy: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """Runs holding something whose last activity is older than ``idle_for`` seconds and
        that have no job running (``busy``): their coordinator is gone."""
        now = time.monotonic()
        return tuple(
            run_id
            for run_id in self.run_ids()
            if run_id not in busy and now - self._last_used.get(run_id, now) > idle_for
        )

    def names(self, run_id: str) -> tuple[str, ...]:
        return tuple(item.name for item in self._items if item.run_id == run_id)

    def run_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.run_id for item in self._items))

    async def release(self, run_id: str, name: str | None = None) -> None:
        await self.release_run(run_id, name)

    async def release_run(self, run_id: str, name: str | None = None) -> ReleaseReport:
        """Release ``name`` of ``run_id`` (or everything the run registered)."""
        chosen = [i for i in self._items if i.run_id == run_id and (name is None or i.name == name)]
        return await self._release(chosen)

    async def release_all(self) -> ReleaseReport:
        return await self._release(list(self._items))

    async def _release(self, chosen: list[Releasable]) -> ReleaseReport:
        # Unregister first: a release that hangs or fails is never attempted twice.
        self._items = [i for i in self._items if i not in chosen]
        for run_id in {i.run_id for i in chosen} - set(self.run_ids()):
            self._last_used.pop(run_id, None)
        released: list[str] = []
        failed: list[str] = []
        for item in reversed(chosen):
            try:
                await asyncio.wait_for(item.release(), self._release_timeout)
            except TimeoutError:
                log.error(
                    "release of %s (run %s) took more than %gs; abandoned",
                    item.name,
                    item.run_id,
                    self._release_timeout,
                )
                failed.append(item.name)
            except Exception:
                log.exception("release of %s (run %s) failed", item.name, item.run_id)
                failed.append(item.name)
            else:
                log.info("released %s (run %s)", item.name, item.run_id)
                released.append(item.name)
        return ReleaseReport(tuple(released), tuple(failed))
