"""Coordinator-side probe drivers and their metrics.

Every module of this package that defines a module-level ``DRIVER`` is a probe: ``default_drivers``
finds them, so adding a probe adds its module and nothing else here.  The result is the registry
the CLI passes to planning, execution and judging; ``registry()`` joins each driver with its
agent-side declaration (jobs, tools, capabilities) for the checks that keep the Makefile, the
image and the DaemonSet in step.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talbench.agents.probe import ProbeDeclaration
    from talbench.bench.probes.base import ProbeDriver


def default_drivers() -> dict[str, ProbeDriver]:
    drivers: dict[str, ProbeDriver] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        driver = getattr(module, "DRIVER", None)
        if driver is None:
            continue
        if driver.name in drivers:
            raise RuntimeError(f"probe {driver.name!r} is declared twice ({info.name})")
        drivers[driver.name] = driver
    return drivers


@dataclass(frozen=True)
class ProbeEntry:
    """One probe as the rest of talbench sees it: its driver and its agent-side declaration."""

    name: str
    driver: ProbeDriver
    declaration: ProbeDeclaration | None


def registry() -> tuple[ProbeEntry, ...]:
    return tuple(ProbeEntry(name, d, d.declaration) for name, d in sorted(default_drivers().items()))
