"""Agent-side probes.  Every module of this package that defines a module-level ``PROBE``
(a ``ProbeDeclaration``) is a probe: ``declarations`` finds them and ``default_probes`` is the job
table the agent process serves (passed explicitly to the app: no module-level mutable state).
Adding a probe adds its module and nothing else here."""

from __future__ import annotations

import importlib
import pkgutil

from talbench.agents.probe import Probe, ProbeDeclaration


def declarations() -> dict[str, ProbeDeclaration]:
    found: dict[str, ProbeDeclaration] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        declaration = getattr(module, "PROBE", None)
        if isinstance(declaration, ProbeDeclaration):
            if declaration.name in found:
                raise RuntimeError(f"probe {declaration.name!r} is declared twice ({info.name})")
            found[declaration.name] = declaration
    return found


def default_probes() -> dict[str, Probe]:
    """Job name -> job, over every declared probe."""
    return {job.name: job for declaration in declarations().values() for job in declaration.jobs}
