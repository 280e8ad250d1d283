"""The agent's probes, listed: ``PROBES`` is every probe's declaration (its ``probe`` module's
``PROBE``), ``declarations`` maps them by name and ``default_probes`` is the job table the agent
process serves (passed explicitly to the app: no module-level mutable state).  Adding a probe adds
its folder under agents/probes/ and one line here.

A module of its own, not agents/probes/__init__.py: a probe's helpers run in processes of their
own (the etcd load's workers, ``python -m talbench.agents.probes.etcd.worker``) that must not
import every probe on the way."""

from __future__ import annotations

from pydantic import BaseModel

from talbench.agents.probe import Probe, ProbeDeclaration
from talbench.agents.probes.etcd import probe as etcd
from talbench.agents.probes.fsync import probe as fsync
from talbench.agents.probes.kubeprism import probe as kubeprism
from talbench.agents.probes.mtu import probe as mtu
from talbench.agents.probes.node import probe as node
from talbench.agents.probes.rtt import probe as rtt
from talbench.agents.probes.wireguard import probe as wireguard

PROBES: tuple[ProbeDeclaration, ...] = (
    etcd.PROBE,
    fsync.PROBE,
    kubeprism.PROBE,
    mtu.PROBE,
    node.PROBE,
    rtt.PROBE,
    wireguard.PROBE,
)


def declarations(probes: tuple[ProbeDeclaration, ...] = PROBES) -> dict[str, ProbeDeclaration]:
    """Name -> declaration; a name declared twice is refused."""
    found: dict[str, ProbeDeclaration] = {}
    for declaration in probes:
        if declaration.name in found:
            raise RuntimeError(f"probe {declaration.name!r} is declared twice")
        found[declaration.name] = declaration
    return dict(sorted(found.items()))


def default_probes() -> dict[str, Probe[BaseModel]]:
    """Job name -> job, over every declared probe."""
    return {job.name: job for declaration in declarations().values() for job in declaration.jobs}
