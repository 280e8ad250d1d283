"""Which node pairs a pair probe measures when measuring them all would cost every node O(N).
Pure: no I/O, no clock, no randomness beyond hashing names.

Control-plane pairs are never sampled (the planner keeps them all).  Of the other pairs each node
takes part in about ``degree`` (its budget: streams it sends and echoes), chosen like consistent
hashing: the nodes sit on a ring in the order of a hash of their names, and each is paired with
its next ``degree // 2`` (rounded up) neighbours on the ring.  So:

- the choice depends only on node names: two runs of the same cluster measure the same pairs
  and compare, and a node joining or leaving changes only the pairs around it on the ring;
- every node is measured, its load bounded by ``degree`` (+1 when ``degree`` is odd) whatever N;
- every pair of zones (``topology.kubernetes.io/zone``) gets one pair of its own (zone cover),
  spread over each zone's nodes: at most one extra pair per node and other zone;
- cost O(N log N), not the N squared of ranking every pair.

On a cluster small enough that the ring already pairs everyone, nothing is sampled out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from talbench.bench.model import Node, Role

ZONE_LABEL = "topology.kubernetes.io/zone"
Pair = tuple[str, str]  # sorted names

ZONE_COVER = "zone cover"
SAMPLED = "ring neighbour"


@dataclass(frozen=True)
class PairSample:
    chosen: Mapping[Pair, str]  # pair -> why it was chosen
    candidates: int  # pairs the sample was chosen from (every pair but the control planes')
    degree: int  # the budget: pairs per node

    @property
    def sampled_out(self) -> int:
        return self.candidates - len(self.chosen)


def name_hash(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a <= b else (b, a)


def sample_pairs(nodes: Sequence[Node], degree: int) -> PairSample:
    """The pairs (other than control plane to control plane) that ``nodes`` measure."""
    control = {node.name for node in nodes if node.role is Role.CONTROL_PLANE}
    ring = sorted({node.name for node in nodes}, key=lambda name: (name_hash(name), name))
    n = len(ring)
    chosen: dict[Pair, str] = {}

    def allowed(pair: Pair) -> bool:
        return pair[0] != pair[1] and not (pair[0] in control and pair[1] in control)

    for zone_pair in _zone_cover(nodes, ring):
        if allowed(zone_pair):
            chosen[zone_pair] = ZONE_COVER
    reach = min((degree + 1) // 2, n // 2)
    for i, name in enumerate(ring):
        for step in range(1, reach + 1):
            pair = _pair(name, ring[(i + step) % n])
            if allowed(pair):
                chosen.setdefault(pair, SAMPLED)
    candidates = n * (n - 1) // 2 - len(control) * (len(control) - 1) // 2
    return PairSample(chosen, candidates, degree)


def _zone_cover(nodes: Sequence[Node], ring: Sequence[str]) -> Iterable[Pair]:
    """One pair per pair of zones, spread over each zone's nodes in ring order."""
    zone_of = {node.name: node.labels.get(ZONE_LABEL) for node in nodes}
    members: dict[str, list[str]] = {}
    for name in ring:
        zone = zone_of.get(name)
        if zone is not None:
            members.setdefault(zone, []).append(name)
    zones = sorted(members)
    for i, a in enumerate(zones):
        for j in range(i + 1, len(zones)):
            b = zones[j]
            yield _pair(members[a][j % len(members[a])], members[b][i % len(members[b])])


def node_load(pairs: Iterable[Pair]) -> dict[str, int]:
    """Pairs per node."""
    load: dict[str, int] = {}
    for pair in pairs:
        for name in pair:
            load[name] = load.get(name, 0) + 1
    return load
