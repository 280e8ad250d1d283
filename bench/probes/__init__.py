"""Coordinator-side probes: one folder per probe (``<name>/driver.py`` defines its ``DRIVER``; the
folder holds its metrics and every helper only that probe runs), the same name as its agent-side
folder under agents/probes/.  ``DRIVERS`` lists them: the registry the CLI passes to planning,
execution and judging; ``registry()`` joins each driver with its agent-side declaration (jobs,
tools, capabilities) for the checks that keep the Makefile, the image and the DaemonSet in step.
Adding a probe adds its folder and one line here.

What several probes share stays beside this file: base.py (the driver protocol), declared.py
(settings from a scenario) and peer_jobs.py (the per-pair fan-out of rtt and mtu).
"""

from __future__ import annotations

from dataclasses import dataclass

from talbench.agents.params import Params
from talbench.agents.probe import ProbeDeclaration
from talbench.bench.probes.base import ProbeDriver
from talbench.bench.probes.etcd.driver import DRIVER as ETCD
from talbench.bench.probes.etcd_live.driver import DRIVER as ETCD_LIVE
from talbench.bench.probes.fsync.driver import DRIVER as FSYNC
from talbench.bench.probes.kubeprism.driver import DRIVER as KUBEPRISM
from talbench.bench.probes.mtu.driver import DRIVER as MTU
from talbench.bench.probes.node.driver import DRIVER as NODE
from talbench.bench.probes.rtt.driver import DRIVER as RTT
from talbench.bench.probes.topology.driver import DRIVER as TOPOLOGY
from talbench.bench.probes.wireguard.driver import DRIVER as WIREGUARD

DRIVERS: tuple[ProbeDriver[Params], ...] = (ETCD, ETCD_LIVE, FSYNC, KUBEPRISM, MTU, NODE, RTT, TOPOLOGY, WIREGUARD)


def default_drivers(drivers: tuple[ProbeDriver[Params], ...] = DRIVERS) -> dict[str, ProbeDriver[Params]]:
    """Name -> driver (a fresh dict: the CLI may add to it); a name declared twice is refused."""
    found: dict[str, ProbeDriver[Params]] = {}
    for driver in drivers:
        if driver.name in found:
            raise RuntimeError(f"probe {driver.name!r} is declared twice")
        found[driver.name] = driver
    return found


@dataclass(frozen=True)
class ProbeEntry:
    """One probe as the rest of talbench sees it: its driver and its agent-side declaration."""

    name: str
    driver: ProbeDriver[Params]
    declaration: ProbeDeclaration | None


def registry() -> tuple[ProbeEntry, ...]:
    return tuple(ProbeEntry(name, d, d.declaration) for name, d in sorted(default_drivers().items()))
