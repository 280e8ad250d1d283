"""Planning: which checks run, over which subjects, and which results they need.

Computed up front from the scenario and the nodes, before anything is measured, so that a result
that never comes is visible as missing (no_data), never silently absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from talbench.bench.errors import UsageError
from talbench.bench.metric import Metric
from talbench.bench.model import STORAGE_LABEL, Check, Node, ResultKey, Role, Scenario, Scope, Subject


@dataclass(frozen=True)
class Plan:
    checks: tuple[Check, ...]
    subjects: tuple[tuple[Check, tuple[Subject, ...]], ...]
    keys: frozenset[ResultKey]

    def keys_of(self, probe: str) -> frozenset[ResultKey]:
        return frozenset(key for key in self.keys if key.probe == probe)

    @property
    def probes(self) -> tuple[str, ...]:
        return tuple(sorted({key.probe for key in self.keys}))


def select_checks(scenario: Scenario, only: Iterable[str] | None) -> tuple[Check, ...]:
    """``--only``: probe names (``rtt``) or check names; an unknown one is a usage error."""
    wanted = [w.strip() for w in only or () if w.strip()]
    if not wanted:
        return scenario.checks
    probes = {check.probe for check in scenario.checks}
    names = {check.name for check in scenario.checks}
    unknown = [w for w in wanted if w not in probes and w not in names]
    if unknown:
        raise UsageError(
            f"--only {','.join(unknown)}: not a probe or check of scenario {scenario.name} "
            f"(probes: {', '.join(sorted(probes))}; checks: {', '.join(sorted(names))})"
        )
    return tuple(c for c in scenario.checks if c.probe in wanted or c.name in wanted)


def subjects(scope: Scope, nodes: Sequence[Node]) -> tuple[Subject, ...]:
    names = sorted(node.name for node in nodes)
    control = sorted(node.name for node in nodes if node.role is Role.CONTROL_PLANE)
    workers = sorted(node.name for node in nodes if node.role is not Role.CONTROL_PLANE)
    if scope is Scope.CLUSTER:
        return (Subject(()),)
    if scope is Scope.ALL_NODES:
        return tuple(Subject((n,)) for n in names)
    if scope is Scope.CONTROL_PLANE_NODES:
        return tuple(Subject((n,)) for n in control)
    if scope is Scope.WORKER_NODES:
        return tuple(Subject((n,)) for n in workers)
    if scope is Scope.STORAGE_NODES:
        return tuple(Subject((n.name,)) for n in sorted(nodes, key=lambda n: n.name) if STORAGE_LABEL in n.labels)
    pairs = [Subject(pair) for pair in combinations(names, 2)]
    if scope is Scope.ALL_PAIRS:
        return tuple(pairs)
    both_control = [s for s in pairs if set(s.nodes) <= set(control)]
    if scope is Scope.CONTROL_PLANE_PAIRS:
        return tuple(both_control)
    return tuple(s for s in pairs if s not in both_control)  # OTHER_PAIRS


def make_plan(checks: Sequence[Check], nodes: Sequence[Node], metrics: Mapping[str, Metric]) -> Plan:
    planned = []
    keys: set[ResultKey] = set()
    for check in checks:
        metric = metrics[check.metric]
        found = subjects(check.scope, nodes)
        planned.append((check, found))
        for subject in found:
            keys.update(metric.keys_for(subject))
    return Plan(tuple(checks), tuple(planned), frozenset(keys))
