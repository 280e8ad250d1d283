"""Planning: which checks run, over which subjects, and which results they need.

Computed up front from the scenario and the nodes, before anything is measured, so that a result
that never comes is visible as missing (no_data), never silently absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from talbench.bench.errors import UsageError
from talbench.bench.metric import Metric
from talbench.bench.model import (
    STORAGE_LABEL,
    Check,
    Node,
    ResultKey,
    Role,
    Scenario,
    Scope,
    Subject,
    SubjectKind,
)
from talbench.bench.sampling import PairSample, sample_pairs

PROCESS_LAB = "lab"  # the target whose nodes are network namespaces (bench/dispatch/lab.py)


@dataclass(frozen=True)
class Plan:
    checks: tuple[Check, ...]
    subjects: tuple[tuple[Check, tuple[Subject, ...]], ...]
    keys: frozenset[ResultKey]
    # pair probes under a per-node budget: probe -> the pairs chosen beyond the control planes'
    samples: Mapping[str, PairSample] = field(default_factory=dict, compare=False)
    sampled_out: Mapping[str, int] = field(default_factory=dict, compare=False)  # check name -> pairs left out
    # checks that cannot be judged on this target: check name -> why (an info verdict, no key)
    not_applicable: Mapping[str, str] = field(default_factory=dict, compare=False)

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
    control_set = set(control)
    if scope is Scope.CONTROL_PLANE_PAIRS:
        return tuple(Subject(pair) for pair in combinations(control, 2))
    pairs = combinations(names, 2)
    if scope is Scope.ALL_PAIRS:
        return tuple(Subject(pair) for pair in pairs)
    return tuple(Subject(p) for p in pairs if p[0] not in control_set or p[1] not in control_set)  # OTHER_PAIRS


def make_plan(
    checks: Sequence[Check],
    nodes: Sequence[Node],
    metrics: Mapping[str, Metric],
    pair_budget: Mapping[str, int] | None = None,
    *,
    target: str | None = None,
) -> Plan:
    """Every check's subjects and the results they need.  ``pair_budget`` (probe -> most pairs
    per node beyond the control planes') bounds what a pair probe costs each node whatever the
    cluster's size: control-plane pairs are all kept, the others sampled (bench/sampling.py).
    On the process lab (``target`` "lab") a check of what only Kubernetes nodes have is planned
    with no subject and a reason (``Plan.not_applicable``)."""
    planned: list[tuple[Check, tuple[Subject, ...]]] = []
    keys: set[ResultKey] = set()
    samples: dict[str, PairSample] = {}
    sampled_out: dict[str, int] = {}
    not_applicable: dict[str, str] = {}
    for check in checks:
        metric = metrics[check.metric]
        if metric.needs_kubernetes and target == PROCESS_LAB:
            not_applicable[check.name] = (
                "does not apply on the process lab: it needs a Kubernetes node, and lab nodes are network "
                "namespaces without a kubelet (judged with --target kube: the Kubernetes lab or a cluster)"
            )
            planned.append((check, ()))
            continue
        budget = (pair_budget or {}).get(metric.probe)
        sampled = check.scope in (Scope.OTHER_PAIRS, Scope.ALL_PAIRS) and metric.kind is SubjectKind.PAIR
        if budget is not None and sampled:
            # never enumerates every pair: the chosen ones, and the control planes' for all-pairs
            if metric.probe not in samples:
                samples[metric.probe] = sample_pairs(nodes, budget)
            sample = samples[metric.probe]
            found = tuple(Subject(pair) for pair in sorted(sample.chosen))
            if check.scope is Scope.ALL_PAIRS:
                found = subjects(Scope.CONTROL_PLANE_PAIRS, nodes) + found
            if sample.sampled_out:
                sampled_out[check.name] = sample.sampled_out
        else:
            found = subjects(check.scope, nodes)
        planned.append((check, found))
        for subject in found:
            keys.update(metric.keys_for(subject))
    return Plan(tuple(checks), tuple(planned), frozenset(keys), samples, sampled_out, not_applicable)
