"""What report.html plots, read from a RunRecord's raw results: the RTT matrix, latency
distributions (RTT samples, fio's fdatasync histogram, the etcd load's histogram, etcd's own
WAL-fsync and backend-commit buckets) and the nodes' CPU over the run.  Pure: no I/O, no plotting
(bench/report/html_figures.py draws these with plotly).

Percentiles are taken over raw samples (RTT) or read off the stored histograms, never averaged.
A distribution is handed to the plot as a CDF of at most ``CDF_POINTS`` points: with 1,000 nodes
the raw samples run to hundreds of millions, the page needs a few hundred points per line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from talbench.agents.etcdload import promtext
from talbench.agents.etcdload.histogram import bucket_bounds, bucket_index
from talbench.bench.model import CLUSTER_NODE, Measurement, Node, Role, RunRecord
from talbench.bench.stats import Summary

CDF_POINTS = 400
# Up to this many subjects a distribution plot gets a line per subject (pair or node); above it,
# subjects are pooled by group (control-plane pairs, control plane to worker, ...).
MAX_LINES = 16
# Per-cell hover details (p50, loss, samples) are kept up to this many nodes; above, a cell
# carries its p99 only (1,000 nodes are a million cells).
DETAILED_CELLS_UP_TO = 150


@dataclass(frozen=True)
class Cdf:
    """One line of a distribution plot: latencies in seconds and the share at or below each."""

    name: str
    values: tuple[float, ...]
    shares: tuple[float, ...]
    count: int


@dataclass(frozen=True)
class RttMatrix:
    """p99 RTT per measured direction, row = the agent that measured, column = its peer.
    ``nodes`` lists control planes first (then the others), each group in natural name order."""

    nodes: tuple[str, ...]
    control_planes: int
    p99: tuple[tuple[float | None, ...], ...]  # seconds; None: not measured or no reply
    p50: tuple[tuple[float | None, ...], ...]  # empty above DETAILED_CELLS_UP_TO nodes
    loss: tuple[tuple[float | None, ...], ...]  # share lost; empty above DETAILED_CELLS_UP_TO
    samples: tuple[tuple[int, ...], ...]  # empty above DETAILED_CELLS_UP_TO
    measured: int  # directions with at least one sample: the cells drawn

    @property
    def worst_first(self) -> tuple[str, ...]:
        """Nodes by their slowest measured direction (as agent or as peer), slowest first."""
        worst = dict.fromkeys(self.nodes, -1.0)
        for i, row in enumerate(self.p99):
            for j, value in enumerate(row):
                if value is not None:
                    worst[self.nodes[i]] = max(worst[self.nodes[i]], value)
                    worst[self.nodes[j]] = max(worst[self.nodes[j]], value)
        return tuple(sorted(self.nodes, key=lambda n: (-worst[n], natural_key(n))))


@dataclass(frozen=True)
class Series:
    """One line over time: unix seconds and values."""

    name: str
    times: tuple[float, ...]
    values: tuple[float, ...]


def natural_key(name: str) -> tuple[Any, ...]:
    """``cp2`` before ``cp10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def ordered_nodes(nodes: Sequence[Node]) -> tuple[Node, ...]:
    """Control planes first, then the others; natural name order within each group."""
    return tuple(sorted(nodes, key=lambda n: (n.role is not Role.CONTROL_PLANE, natural_key(n.name))))


def _ok(record: RunRecord, probe: str) -> list[Measurement]:
    return [m for m in record.results if m.key.probe == probe and m.ok]


def rtt_samples(m: Measurement) -> list[float]:
    """A direction's round trips in seconds (the raw ``samples_ns``)."""
    raw = m.data.get("samples_ns") or ()
    return [ns / 1e9 for ns in raw if isinstance(ns, (int, float)) and not isinstance(ns, bool)]


def rtt_matrix(record: RunRecord) -> RttMatrix | None:
    measurements = _ok(record, "rtt")
    if not measurements:
        return None
    names = [n.name for n in ordered_nodes(record.nodes)]
    known = set(names)
    for m in measurements:  # a result from a node the record does not list still gets its row
        for name in (m.key.node, m.key.peer or ""):
            if name and name not in known:
                known.add(name)
                names.append(name)
    index = {name: i for i, name in enumerate(names)}
    size = len(names)
    detailed = size <= DETAILED_CELLS_UP_TO
    p99: list[list[float | None]] = [[None] * size for _ in range(size)]
    p50: list[list[float | None]] = [[None] * size for _ in range(size)] if detailed else []
    loss: list[list[float | None]] = [[None] * size for _ in range(size)] if detailed else []
    counts: list[list[int]] = [[0] * size for _ in range(size)] if detailed else []
    measured = 0
    for m in measurements:
        if m.key.peer is None:
            continue
        samples = rtt_samples(m)
        if not samples:
            continue
        row, column = index[m.key.node], index[m.key.peer]
        summary = Summary.of(samples)
        p99[row][column] = summary.p99
        measured += 1
        if detailed:
            sent = m.data.get("sent")
            p50[row][column] = summary.p50
            counts[row][column] = summary.count
            if isinstance(sent, int) and sent > 0:
                loss[row][column] = max(0.0, 1 - summary.count / sent)
    control = sum(1 for n in record.nodes if n.role is Role.CONTROL_PLANE)
    return RttMatrix(
        tuple(names),
        control,
        tuple(map(tuple, p99)),
        tuple(map(tuple, p50)),
        tuple(map(tuple, loss)),
        tuple(map(tuple, counts)),
        measured,
    )


# ---- distributions ----------------------------------------------------------------------------


def cdf_of_samples(name: str, samples: Iterable[float]) -> Cdf | None:
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return None
    if n <= CDF_POINTS:
        ranks = list(range(n))
    else:  # evenly spaced ranks, plus the slowest tenth in full detail up to the budget
        step = (n - 1) / (CDF_POINTS - 1)
        ranks = sorted({round(i * step) for i in range(CDF_POINTS)} | {n - 1})
    return Cdf(name, tuple(ordered[r] for r in ranks), tuple((r + 1) / n for r in ranks), n)


def cdf_of_counts(name: str, counts: Mapping[float, float]) -> Cdf | None:
    """From (value, count) pairs: a histogram whose buckets stand for their value."""
    ordered = sorted((value, count) for value, count in counts.items() if count > 0)
    total = math.fsum(count for _, count in ordered)
    if not total:
        return None
    running = 0.0
    values, shares = [], []
    for value, count in ordered:
        running += count
        values.append(value)
        shares.append(running / total)
    if len(values) > CDF_POINTS:
        keep = sorted({round(i * (len(values) - 1) / (CDF_POINTS - 1)) for i in range(CDF_POINTS)})
        values, shares = [values[i] for i in keep], [shares[i] for i in keep]
    return Cdf(name, tuple(values), tuple(shares), round(total))


def _pair_group(a: str, b: str, roles: Mapping[str, Role]) -> str:
    control = sum(roles.get(n) is Role.CONTROL_PLANE for n in (a, b))
    return ("worker to worker", "control plane to worker", "control plane to control plane")[control]


def rtt_cdfs(record: RunRecord) -> tuple[Cdf, ...]:
    """Both directions of a pair pooled (as the checks judge them).  Above MAX_LINES pairs, one
    line per group of pairs, counted into the etcd load's log-linear buckets (~3 % wide): the
    memory stays bounded however many samples 1,000 nodes bring."""
    roles = {n.name: n.role for n in record.nodes}
    directions = [m for m in _ok(record, "rtt") if m.key.peer is not None]
    pairs = {tuple(sorted((m.key.node, m.key.peer or ""), key=natural_key)) for m in directions}
    if len(pairs) > MAX_LINES:
        groups: dict[str, dict[int, int]] = {}
        for m in directions:
            counts = groups.setdefault(_pair_group(m.key.node, m.key.peer or "", roles), {})
            for seconds in rtt_samples(m):
                index = bucket_index(int(seconds * 1e6))
                counts[index] = counts.get(index, 0) + 1
        lines = [cdf_of_counts(name, _midpoints(counts)) for name, counts in sorted(groups.items(), reverse=True)]
    else:
        pooled: dict[tuple[str, ...], list[float]] = {}
        for m in directions:
            pooled.setdefault(tuple(sorted((m.key.node, m.key.peer or ""), key=natural_key)), []).extend(rtt_samples(m))
        order = sorted(
            pooled, key=lambda p: (-sum(roles.get(n) is Role.CONTROL_PLANE for n in p), natural_key("-".join(p)))
        )
        lines = [cdf_of_samples("-".join(pair), pooled[pair]) for pair in order]
    return tuple(line for line in lines if line is not None)


def _midpoints(counts: Mapping[int, float]) -> dict[float, float]:
    """Log-linear bucket index -> count, to bucket midpoint (seconds) -> count."""
    out: dict[float, float] = {}
    for index, count in counts.items():
        low, high = bucket_bounds(int(index))
        out[(low + high) / 2 / 1e6] = float(count)
    return out


def _fio_bins(m: Measurement) -> dict[float, float]:
    sync = m.data.get("sync")
    block = sync.get("lat") if isinstance(sync, Mapping) else None
    bins = (block or {}).get("bins_ns") or {}
    return {float(value) / 1e9: float(count) for value, count in bins.items()}


def _by_node_or_role(record: RunRecord, per_node: Mapping[str, Mapping[float, float]]) -> tuple[Cdf, ...]:
    roles = {n.name: n.role for n in record.nodes}
    if len(per_node) > MAX_LINES:
        groups: dict[str, dict[float, float]] = {}
        for node, bins in per_node.items():
            group = "control planes" if roles.get(node) is Role.CONTROL_PLANE else "other nodes"
            merged = groups.setdefault(group, {})
            for value, count in bins.items():
                merged[value] = merged.get(value, 0.0) + count
        lines = [cdf_of_counts(name, bins) for name, bins in sorted(groups.items())]
    else:
        order = sorted(per_node, key=lambda n: (roles.get(n) is not Role.CONTROL_PLANE, natural_key(n)))
        lines = [cdf_of_counts(node, per_node[node]) for node in order]
    return tuple(line for line in lines if line is not None)


def fsync_cdfs(record: RunRecord) -> tuple[Cdf, ...]:
    """fio's fdatasync latency histogram per node (the etcd recipe)."""
    return _by_node_or_role(record, {m.key.node: _fio_bins(m) for m in _ok(record, "fsync") if _fio_bins(m)})


def _load_histogram(raw: Any) -> dict[float, float]:
    """The etcd load's log-linear histogram (agents/etcdload/histogram.py wire form), each bucket
    at its midpoint, in seconds."""
    if not isinstance(raw, Mapping) or raw.get("unit") != "us":
        return {}
    return _midpoints({int(index): float(count) for index, count in (raw.get("buckets") or {}).items()})


def _prometheus_counts(merged: Mapping[str, Any] | None) -> dict[float, float]:
    """Cumulative Prometheus buckets to counts per upper bound (``+Inf`` left out: it has no value)."""
    counts: dict[float, float] = {}
    previous = 0.0
    for le, cumulative in (merged or {}).get("buckets") or ():
        if le != "+Inf":
            counts[float(le)] = float(cumulative) - previous
        previous = float(cumulative)
    return counts


def etcd_cdfs(record: RunRecord) -> tuple[Cdf, ...]:
    """The scratch cluster's client write latency (and service time) from the load generator's
    histogram, then each member's WAL fsync and backend commit during the load (etcd's own
    buckets: their resolution doubles per bucket)."""
    lines: list[Cdf | None] = []
    for m in _ok(record, "etcd"):
        if m.key.node == CLUSTER_NODE:
            load = ((m.data.get("result") or {}).get("load")) or {}
            lines.append(cdf_of_counts("client write latency", _load_histogram(load.get("latency"))))
            lines.append(cdf_of_counts("write service time", _load_histogram(load.get("service"))))
    members = sorted(
        (m for m in _ok(record, "etcd") if m.key.node != CLUSTER_NODE), key=lambda m: natural_key(m.key.node)
    )
    for histogram, label in ((promtext.WAL_FSYNC, "WAL fsync"), (promtext.BACKEND_COMMIT, "backend commit")):
        for m in members:
            snapshots = m.data.get("metrics") or {}
            before = ((snapshots.get("before") or {}).get("histograms") or {}).get(histogram, [])
            after = ((snapshots.get("after") or {}).get("histograms") or {}).get(histogram, [])
            if after:
                merged = promtext.merge_histograms(promtext.histogram_delta(before, after))
                lines.append(cdf_of_counts(f"{label} {m.key.node}", _prometheus_counts(merged)))
    return tuple(line for line in lines if line is not None)


# ---- over time --------------------------------------------------------------------------------


def cpu_series(record: RunRecord) -> tuple[Series, ...]:
    """Each node's CPU busy share per sampling interval, from the node probe's cumulative
    counters (cpu_busy_s over cpu_total_s); control planes first."""
    by_node = {m.key.node: m for m in _ok(record, "node")}
    out = []
    for node in ordered_nodes(record.nodes):
        m = by_node.get(node.name)
        columns = ((m.data.get("sampling") or {}).get("columns") or {}) if m else {}
        times, busy, total = (columns.get(k) or () for k in ("t", "cpu_busy_s", "cpu_total_s"))
        points = [
            (t1, (b1 - b0) / (c1 - c0))
            for (_t0, b0, c0), (t1, b1, c1) in pairwise(zip(times, busy, total, strict=False))
            if c1 > c0
        ]
        if points:
            out.append(Series(node.name, tuple(t for t, _ in points), tuple(v for _, v in points)))
    return tuple(out)
