"""Coordinator-side probe drivers and their metrics.  ``default_drivers`` is the registry the
CLI passes to planning, execution and judging."""

from __future__ import annotations

from talbench.bench.probes.base import ProbeDriver


def default_drivers() -> dict[str, ProbeDriver]:
    from talbench.bench.probes.etcd import EtcdDriver
    from talbench.bench.probes.fsync import FsyncDriver
    from talbench.bench.probes.node import NodeDriver
    from talbench.bench.probes.rtt import RttDriver
    from talbench.bench.probes.wireguard import WireguardDriver
    from talbench.bench.kube.kubeprism import KubePrismDriver
    from talbench.bench.kube.topology import TopologyDriver

    drivers: list[ProbeDriver] = [RttDriver()]
    drivers += [WireguardDriver()]
    drivers += [FsyncDriver(), NodeDriver()]
    drivers += [TopologyDriver(), KubePrismDriver()]
    drivers += [EtcdDriver()]
    return {driver.name: driver for driver in drivers}
