"""Helpers that run a whole scenario through a dispatcher, as ``talbench run`` does."""

from __future__ import annotations

from typing import Any

from talbench.bench.dispatch.base import Dispatcher
from talbench.bench.metric import NullProgress
from talbench.bench.model import RunRecord
from talbench.bench.plan import select_checks
from talbench.bench.probes import default_drivers
from talbench.bench.run import RunRequest, metrics_of, run
from talbench.bench.scenario import parse

SCENARIO = """\
schema: 1
name: kube-e2e
probes:
  rtt: {count: 60, interval: 5ms, warmup: 2, stagger: 50ms, min_samples: 30}
checks:
  - name: control-plane-rtt
    metric: rtt.p99
    scope: control-plane-pairs
    fail: 15ms
    source: Talos reference architecture, "less than 15ms RTT"
  - name: control-plane-count
    metric: topology.control_planes
    scope: cluster
    warn: 5
    source: Talos reference architecture, "Use three control plane nodes"
  - name: control-plane-quorum
    metric: topology.control_plane_fault_tolerance
    scope: cluster
    warn: 1
    source: Talos reference architecture, "three nodes can only survive one node failure"
  - name: control-plane-count-odd
    metric: topology.control_planes_even
    scope: cluster
    fail: 1
    source: Talos reference architecture, "Configurations using an even number of control planes are not advised"
  - name: control-plane-tainted
    metric: topology.control_plane_untainted
    scope: control-plane-nodes
    fail: 1
    source: Talos reference architecture, "Do not allow workloads to be scheduled on control plane nodes"
"""

WORKLOADS_CHECK = """\
  - name: control-plane-workloads
    metric: topology.control_plane_workloads
    scope: control-plane-nodes
    fail: 1
    source: Talos reference architecture, "Do not allow workloads to be scheduled on control plane nodes"
"""


async def run_scenario(
    dispatcher: Dispatcher, text: str = SCENARIO, run_id: str = "e2e-run", **extra: Any
) -> RunRecord:
    drivers = default_drivers()
    metrics = metrics_of(drivers)
    settings: dict[str, Any] = {}

    def validate(probe: str, raw: Any) -> None:
        settings[probe] = drivers[probe].settings(raw, quick=True)

    scenario = parse(text, "<test>", metrics, validate)
    checks = select_checks(scenario, None)
    for check in checks:
        settings.setdefault(check.probe, drivers[check.probe].settings({}, quick=True))
    request = RunRequest(run_id, scenario, checks, settings, True, ())
    return await run(request, dispatcher, drivers, NullProgress())


def kinds(record: RunRecord) -> dict[tuple[str, str], str]:
    return {(v.check, str(v.subject)): v.status.value for v in record.verdicts}
