"""Coordinator-side probe drivers and their metrics.  ``default_drivers`` is the registry the
CLI passes to planning, execution and judging."""

from __future__ import annotations

from talbench.bench.probes.base import ProbeDriver


def default_drivers() -> dict[str, ProbeDriver]:
    from talbench.bench.probes.rtt import RttDriver

    drivers: list[ProbeDriver] = [RttDriver()]
    return {driver.name: driver for driver in drivers}
