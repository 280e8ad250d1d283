"""`talbench run --dry-run`: the plan before anything runs, what a user checks before pointing a
benchmark at production: the nodes, every check's subjects (the pairs measured and why, the pairs
sampled out), and per probe its expected duration and what it costs each node (streams, packets
per second, disk writes).  A document (JSON) and its text lines; nothing here runs anything."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.bench.metric import ProbeCost
from talbench.bench.model import Node, Role
from talbench.bench.plan import Plan
from talbench.bench.sampling import ZONE_LABEL
from talbench.bench.units import Dimension, format_value

DRY_RUN_SCHEMA = "talbench/plan/v1"


def _spread(values: Mapping[str, float]) -> dict[str, Any] | None:
    if not values:
        return None
    busiest = max(values, key=lambda name: values[name])
    return {"max": values[busiest], "max_node": busiest, "mean": sum(values.values()) / len(values)}


def plan_document(
    scenario: str, target: str, nodes: Sequence[Node], plan: Plan, costs: Mapping[str, ProbeCost]
) -> dict[str, Any]:
    control = {n.name for n in nodes if n.role is Role.CONTROL_PLANE}
    checks = []
    for check, subjects in plan.subjects:
        entry: dict[str, Any] = {"check": check.name, "scope": check.scope.value, "subjects": len(subjects)}
        probe = check.probe
        if plan.sampled_out.get(check.name):
            sample = plan.samples[probe]
            why = Counter(
                "control-plane pair" if set(s.nodes) <= control else sample.chosen.get((s.nodes[0], s.nodes[1]), "?")
                for s in subjects
            )
            entry.update(sampled_out=plan.sampled_out[check.name], why=dict(sorted(why.items())), budget=sample.degree)
        checks.append(entry)
    probes = []
    for probe in plan.probes:
        cost = costs.get(probe) or ProbeCost(probe, note="not estimated")
        probes.append(
            {
                "probe": probe,
                "results": len(plan.keys_of(probe)),
                "duration_s": cost.duration_s,
                "streams_per_node": _spread(dict(cost.streams)),
                "packets_per_s_per_node": _spread(dict(cost.packets_per_s)),
                "disk_bytes_per_node": _spread(dict(cost.disk_bytes)),
                "disk_bytes_total": sum(cost.disk_bytes.values()),
                "note": cost.note,
            }
        )
    known = [p["duration_s"] for p in probes if p["duration_s"] is not None]
    return {
        "schema": DRY_RUN_SCHEMA,
        "scenario": scenario,
        "target": target,
        "nodes": {
            "total": len(nodes),
            "control_planes": len(control),
            "workers": len(nodes) - len(control),
            "zones": len({n.labels[ZONE_LABEL] for n in nodes if ZONE_LABEL in n.labels}),
        },
        "checks": checks,
        "probes": probes,
        "expected_duration_s": sum(known),  # probes run one after the other
        "not_estimated": [p["probe"] for p in probes if p["duration_s"] is None],
    }


def _bytes(value: float) -> str:
    return format_value(value, Dimension.BYTES)


def plan_lines(doc: Mapping[str, Any]) -> list[str]:
    nodes = doc["nodes"]
    lines = [
        f"plan: scenario {doc['scenario']} on {doc['target']}: {nodes['total']} nodes "
        f"({nodes['control_planes']} control planes, {nodes['workers']} workers"
        + (f", {nodes['zones']} zones)" if nodes["zones"] else ")"),
        "checks:",
    ]
    for entry in doc["checks"]:
        line = f"  {entry['check']:<36} {entry['scope']:<20} {entry['subjects']} subjects"
        if entry.get("sampled_out"):
            why = ", ".join(f"{n} {reason}" for reason, n in entry["why"].items())
            line += f" ({why}); {entry['sampled_out']} pairs sampled out (at most {entry['budget']} per node)"
        lines.append(line)
    lines.append("probes (one after the other):")
    for p in doc["probes"]:
        duration = f"<= {p['duration_s']:.0f} s" if p["duration_s"] is not None else "duration not estimated"
        parts = [f"  {p['probe']:<10} {p['results']} results, {duration}"]
        if p["streams_per_node"]:
            s = p["streams_per_node"]
            parts.append(f"streams per node max {s['max']:.0f} ({s['max_node']}), mean {s['mean']:.1f}")
        if p["packets_per_s_per_node"]:
            s = p["packets_per_s_per_node"]
            parts.append(f"packets/s per node (sent and echoed) max {s['max']:.0f}, mean {s['mean']:.0f}")
        if p["disk_bytes_per_node"]:
            parts.append(
                f"writes {_bytes(p['disk_bytes_per_node']['max'])} per node ({_bytes(p['disk_bytes_total'])} in all)"
            )
        if p["note"]:
            parts.append(p["note"])
        lines.append("; ".join(parts))
    total = f"expected duration: at most {doc['expected_duration_s']:.0f} s"
    if doc["not_estimated"]:
        total += f" plus {', '.join(doc['not_estimated'])} (not estimated)"
    lines.append(total)
    return lines
