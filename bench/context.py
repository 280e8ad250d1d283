"""The host context of a measurement: what the node's host was doing besides the job
(agents/host_context.py's ``host_*`` resource fields).  Pure: no I/O.

Every verdict carries a one-line description of it (``describe``), and a fail measured while
the host was busy with other work is measured once more before it stands (bench/retry.py), as
pyperf warns about a benchmark run on an unstable system.  What counts as busy:

- STEAL_PERCENT: the hypervisor gave this share of the CPUs to other guests;
- OTHER_CPU_PERCENT: processes other than the agent and its tools kept this share of all CPUs
  busy (on a 2-core host: one core's worth);
- WRITEBACK_BYTES: this much dirty page cache was being written back at once by someone, the
  disk an fdatasync waits for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from talbench.bench.model import Measurement
from talbench.bench.units import Dimension, format_value

STEAL_PERCENT = 5.0
OTHER_CPU_PERCENT = 50.0
WRITEBACK_BYTES = 64 << 20


def resource_number(resources: Mapping[str, Any], field: str) -> float | None:
    """A numeric field of a job's ``resources`` (None when absent or not a number)."""
    value = resources.get(field)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bytes(value: float) -> str:
    return format_value(value, Dimension.BYTES)


def describe(resources: Mapping[str, Any]) -> str:
    """``steal 0 %, iowait 2 %, other processes 12 % CPU, writeback 0 B (dirty 340 MiB)``; ""
    when the agent reported no host context."""
    parts = []
    for field, label in (("host_steal_percent", "steal"), ("host_iowait_percent", "iowait")):
        value = resource_number(resources, field)
        if value is not None:
            parts.append(f"{label} {value:.0f} %")
    other = resource_number(resources, "host_other_cpu_percent")
    if other is not None:
        parts.append(f"other processes {other:.0f} % CPU")
    writeback, dirty = (
        resource_number(resources, "host_writeback_max_bytes"),
        resource_number(resources, "host_dirty_max_bytes"),
    )
    if writeback is not None:
        parts.append(f"writeback {_bytes(writeback)}" + (f" (dirty {_bytes(dirty)})" if dirty is not None else ""))
    return ", ".join(parts)


def noise(resources: Mapping[str, Any]) -> str | None:
    """Why the host was too busy for a fail measured on it to stand unchecked, or None."""
    reasons = []
    steal = resource_number(resources, "host_steal_percent")
    if steal is not None and steal >= STEAL_PERCENT:
        reasons.append(f"the hypervisor took {steal:.0f} % of the CPUs (steal)")
    other = resource_number(resources, "host_other_cpu_percent")
    if other is not None and other >= OTHER_CPU_PERCENT:
        reasons.append(f"other processes kept {other:.0f} % of the CPUs busy")
    writeback = resource_number(resources, "host_writeback_max_bytes")
    if writeback is not None and writeback >= WRITEBACK_BYTES:
        reasons.append(f"{_bytes(writeback)} of other writes were being flushed to disk")
    return "; ".join(reasons) or None


def context_of(measurements: Sequence[Measurement]) -> str:
    """The context of the busiest node among ``measurements``: ``cp2: steal 0 %, ...``."""
    described = [(m, describe(m.resources)) for m in measurements]
    described = [(m, text) for m, text in described if text]
    if not described:
        return ""
    busiest, text = max(described, key=lambda item: resource_number(item[0].resources, "host_other_cpu_percent") or 0.0)
    return f"{busiest.key.node}: {text}"


def noise_of(measurements: Sequence[Measurement]) -> str | None:
    """Each busy node's reason, ``cp2: other processes kept 85 % of the CPUs busy``, or None."""
    seen: dict[str, str] = {}
    for m in measurements:
        reason = noise(m.resources)
        if reason is not None:
            seen.setdefault(m.key.node, reason)
    return "; ".join(f"{node}: {reason}" for node, reason in sorted(seen.items())) or None
