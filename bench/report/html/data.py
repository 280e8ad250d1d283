"""What report.html plots, read from a RunRecord's raw results: the RTT matrix, latency
distributions (RTT samples, fio's fdatasync histogram, the etcd load's histogram, etcd's own
WAL-fsync and backend-commit buckets) and the nodes' CPU over the run.  Pure: no I/O, no plotting
(bench/report/html/figures.py draws these with plotly).

Percentiles are taken over raw samples or read off the stored histograms (an RTT direction the
driver compacted, fio's, etcd's), never averaged.  A distribution is handed to the plot as a CDF
of at most ``CDF_POINTS`` points: with 1,000 nodes the raw samples run to hundreds of millions,
the page needs a few hundred points per line.  The RTT matrix is sparse, its measured directions
only: 1,000 nodes are a million positions of which a few thousand are measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from talbench.agents.probes.etcd import promtext
from talbench.agents.probes.etcd.histogram import bucket_bounds
from talbench.bench.histogram import Histogram
from talbench.bench.histogram import bucket_bounds as rtt_bucket_bounds
from talbench.bench.model import CLUSTER_NODE, Measurement, Node, Role, RunRecord
from talbench.bench.stats import Summary

CDF_POINTS = 400
# Up to this many subjects a distribution plot gets a line per subject (pair or node); above it,
# subjects are pooled by group (control-plane pairs, control plane to worker, ...).
MAX_LINES = 16


@dataclass(frozen=True)
class Cdf:
    """One line of a distribution plot: latencies in seconds and the share at or below each."""

    name: str
    values: tuple[float, ...]
    shares: tuple[float, ...]
    count: int


@dataclass(frozen=True)
class Cell:
    """One measured direction: ``row`` indexes the agent that measured, ``column`` its peer."""

    row: int
    column: int
    p99: float  # seconds
    p50: float  # seconds
    loss: float | None  # share lost; None when the agent did not say how many it sent
    samples: int


@dataclass(frozen=True)
class RttMatrix:
    """RTT per measured direction, as a sparse matrix: ``cells`` holds the directions with at
    least one sample, nothing else (1,000 nodes are a million positions, a few thousand of them
    measured).  ``nodes`` lists control planes first (then the others), each group in natural
    name order; a cell's row and column index it."""

    nodes: tuple[str, ...]
    control_planes: int
    cells: tuple[Cell, ...]

    @property
    def measured(self) -> int:
        """Directions with at least one sample: the cells drawn."""
        return len(self.cells)

    @property
    def worst_first(self) -> tuple[str, ...]:
        """Nodes by their slowest measured direction (as agent or as peer), slowest first."""
        worst = [-1.0] * len(self.nodes)
        for cell in self.cells:
            worst[cell.row] = max(worst[cell.row], cell.p99)
            worst[cell.column] = max(worst[cell.column], cell.p99)
        order = sorted(range(len(self.nodes)), key=lambda i: (-worst[i], natural_key(self.nodes[i])))
        return tuple(self.nodes[i] for i in order)


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
    """A direction's round trips in seconds (the raw ``samples_ns``; none where compacted)."""
    raw = m.data.get("samples_ns") or ()
    return [ns / 1e9 for ns in raw if isinstance(ns, (int, float)) and not isinstance(ns, bool)]


def rtt_histogram(m: Measurement) -> Histogram:
    """A direction's round trips (ns) as a histogram: the one the driver compacted them into
    (bench/probes/rtt/metrics.py ``compact``), or its raw samples counted into the same buckets."""
    stored = m.data.get("histogram_ns")
    if isinstance(stored, Histogram):
        return stored
    if isinstance(stored, Mapping):
        return Histogram.from_json(stored)
    raw = m.data.get("samples_ns") or ()
    return Histogram.of(int(ns) for ns in raw if isinstance(ns, (int, float)) and not isinstance(ns, bool))


def _cell(m: Measurement, row: int, column: int) -> Cell | None:
    """The direction's figures: from its raw samples, or read off its histogram (within
    bench/histogram.py's resolution) where only that was kept."""
    if "histogram_ns" in m.data:
        counted = rtt_histogram(m)
        if not counted.count:
            return None
        p99, p50, n = counted.percentile(99) / 1e9, counted.percentile(50) / 1e9, counted.count
    else:
        samples = rtt_samples(m)
        if not samples:
            return None
        summary = Summary.of(samples)
        p99, p50, n = summary.p99, summary.p50, summary.count
    sent = m.data.get("sent")
    loss = max(0.0, 1 - n / sent) if isinstance(sent, int) and not isinstance(sent, bool) and sent > 0 else None
    return Cell(row, column, p99, p50, loss, n)


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
    cells = [
        cell
        for m in measurements
        if m.key.peer is not None and (cell := _cell(m, index[m.key.node], index[m.key.peer])) is not None
    ]
    cells.sort(key=lambda c: (c.row, c.column))
    control = sum(1 for n in record.nodes if n.role is Role.CONTROL_PLANE)
    return RttMatrix(tuple(names), control, tuple(cells))


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
    line per group of pairs, merged into bench/histogram.py's log-linear buckets (within
    1/64 of a value either way): the memory stays bounded however many samples 1,000 nodes
    bring, and the directions the driver compacted count as much as the raw ones."""
    roles = {n.name: n.role for n in record.nodes}
    directions = [m for m in _ok(record, "rtt") if m.key.peer is not None]
    pairs: dict[tuple[str, ...], list[Measurement]] = {}
    for m in directions:
        pairs.setdefault(tuple(sorted((m.key.node, m.key.peer or ""), key=natural_key)), []).append(m)
    if len(pairs) > MAX_LINES:
        groups: dict[str, Histogram] = {}
        for m in directions:
            group = _pair_group(m.key.node, m.key.peer or "", roles)
            groups[group] = groups.get(group, Histogram()).merge(rtt_histogram(m))
        lines = [_cdf_of_histogram(name, counted) for name, counted in sorted(groups.items(), reverse=True)]
    else:
        order = sorted(
            pairs, key=lambda p: (-sum(roles.get(n) is Role.CONTROL_PLANE for n in p), natural_key("-".join(p)))
        )
        lines = [_cdf_of_pair("-".join(pair), pairs[pair]) for pair in order]
    return tuple(line for line in lines if line is not None)


def _cdf_of_pair(name: str, directions: Sequence[Measurement]) -> Cdf | None:
    """From the raw samples; from the merged histograms where a direction kept only that."""
    if any("histogram_ns" in m.data for m in directions):
        merged = Histogram()
        for m in directions:
            merged = merged.merge(rtt_histogram(m))
        return _cdf_of_histogram(name, merged)
    return cdf_of_samples(name, (s for m in directions for s in rtt_samples(m)))


def _cdf_of_histogram(name: str, counted: Histogram) -> Cdf | None:
    """Each bucket at its middle, in seconds, clamped to the exact minimum and maximum."""
    low, high = counted.minimum or 0, counted.maximum
    at: dict[float, float] = {}
    for index, n in counted.counts.items():
        start, end = rtt_bucket_bounds(index)
        middle = min(max((start + end - 1) / 2, low), high if high is not None else end)
        at[middle / 1e9] = at.get(middle / 1e9, 0.0) + n
    return cdf_of_counts(name, at)


def _midpoints(counts: Mapping[int, float]) -> dict[float, float]:
    """The etcd load's log-linear bucket index -> count, to bucket midpoint (seconds) -> count."""
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
    """The etcd load's log-linear histogram (agents/probes/etcd/histogram.py wire form), each bucket
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
