"""Agent-side probes.  ``default_probes`` is the registry the agent process serves; it is passed
explicitly to the app (no module-level mutable state).  Imports are lazy so that a probe whose
optional tool is missing does not stop the others."""

from __future__ import annotations

from talbench.agents.probe import Probe


def default_probes() -> dict[str, Probe]:
    from talbench.agents.probes.etcd_load import EtcdLoadProbe
    from talbench.agents.probes.etcd_member import EtcdMemberProbe
    from talbench.agents.probes.fsync import FsyncProbe
    from talbench.agents.probes.iperf import IperfProbe
    from talbench.agents.probes.kubeprism import KubePrismProbe
    from talbench.agents.probes.node import NodeProbe
    from talbench.agents.probes.rtt import RttProbe
    from talbench.agents.probes.wg_tunnel import WgTunnelProbe

    probes: list[Probe] = [RttProbe()]
    probes += [IperfProbe(), WgTunnelProbe()]
    probes += [FsyncProbe(), NodeProbe()]
    probes += [KubePrismProbe()]
    probes += [EtcdMemberProbe(), EtcdLoadProbe()]
    return {probe.name: probe for probe in probes}
