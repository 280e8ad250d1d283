"""Agent-side probes.  ``default_probes`` is the registry the agent process serves; it is passed
explicitly to the app (no module-level mutable state).  Imports are lazy so that a probe whose
optional tool is missing does not stop the others."""

from __future__ import annotations

from talbench.agents.probe import Probe


def default_probes() -> dict[str, Probe]:
    from talbench.agents.probes.rtt import RttProbe

    probes: list[Probe] = [RttProbe()]
    return {probe.name: probe for probe in probes}
