"""etcd's Prometheus metrics (text exposition format): parse the histograms and counters talbench
judges, subtract two snapshots, and read quantiles off cumulative buckets.

Quantiles from Prometheus buckets carry the bucket resolution (etcd's disk histograms double per
bucket: 1 ms, 2 ms, 4 ms, 8 ms, 16 ms ...): ``quantile_interpolated`` reads them as Prometheus'
histogram_quantile() does (linear inside the bucket, how operators check "p99 < 10 ms"),
``quantile_upper_bound`` gives the bucket's upper bound ("the p99 is at most this").

Snapshot wire form: {"histograms": {name: [{"labels": {...}, "buckets": [[le, cumulative], ...],
"sum": s, "count": n}]}, "counters": {name: [{"labels": {...}, "value": v}]}}.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

WAL_FSYNC = "etcd_disk_wal_fsync_duration_seconds"
BACKEND_COMMIT = "etcd_disk_backend_commit_duration_seconds"
PEER_RTT = "etcd_network_peer_round_trip_time_seconds"
HISTOGRAMS = (WAL_FSYNC, BACKEND_COMMIT, PEER_RTT)
COUNTERS = (
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_slow_apply_total",
    "etcd_server_heartbeat_send_failures_total",
)
GAUGES = ("etcd_server_has_leader", "etcd_mvcc_db_total_size_in_bytes")

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    return {key: value.replace('\\"', '"').replace("\\\\", "\\") for key, value in _LABEL.findall(text)}


def _number(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)


def parse(
    text: str, histograms: Sequence[str] = HISTOGRAMS, counters: Sequence[str] = COUNTERS + GAUGES
) -> dict[str, Any]:
    """The named histograms and counters/gauges of one /metrics page."""
    wanted_h = set(histograms)
    wanted_c = set(counters)
    series: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    found_c: dict[str, list[dict[str, Any]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, _, label_text, value_text = match.group(1), match.group(2), match.group(3), match.group(4)
        try:
            value = _number(value_text)
        except ValueError:
            continue
        if name in wanted_c:
            found_c.setdefault(name, []).append({"labels": _labels(label_text), "value": value})
            continue
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in wanted_h:
                base = name[: -len(suffix)]
                labels = _labels(label_text)
                le = labels.pop("le", None)
                entry = series.setdefault(
                    (base, tuple(sorted(labels.items()))), {"labels": labels, "buckets": [], "sum": 0.0, "count": 0.0}
                )
                if suffix == "_bucket" and le is not None:
                    entry["buckets"].append([_number(le), value])
                elif suffix == "_sum":
                    entry["sum"] = value
                elif suffix == "_count":
                    entry["count"] = value
                break
    found_h: dict[str, list[dict[str, Any]]] = {}
    for (base, _), entry in sorted(series.items(), key=lambda item: (item[0][0], item[0][1])):
        entry["buckets"].sort(key=lambda pair: pair[0])
        entry["buckets"] = [[_wire_le(le), count] for le, count in entry["buckets"]]
        found_h.setdefault(base, []).append(entry)
    return {"histograms": found_h, "counters": found_c}


def _wire_le(le: float) -> float | str:
    return "+Inf" if math.isinf(le) else le


def _le(value: float | str) -> float:
    return math.inf if value == "+Inf" else float(value)


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def histogram_delta(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per label set: after minus before (a series missing before counts from zero; a counter
    that went backwards, i.e. a restarted member, keeps its after values)."""
    old = {_key(entry["labels"]): entry for entry in before}
    result = []
    for entry in after:
        previous = old.get(_key(entry["labels"]))
        if previous is None:
            result.append({**entry, "buckets": [list(pair) for pair in entry["buckets"]]})
            continue
        prior = {_le(le): count for le, count in previous["buckets"]}
        buckets = [[le, count - prior.get(_le(le), 0.0)] for le, count in entry["buckets"]]
        count = entry["count"] - previous["count"]
        if count < 0 or any(c < 0 for _, c in buckets):
            result.append({**entry, "buckets": [list(pair) for pair in entry["buckets"]]})
            continue
        result.append(
            {"labels": dict(entry["labels"]), "buckets": buckets, "sum": entry["sum"] - previous["sum"], "count": count}
        )
    return result


def merge_histograms(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One histogram from several series with the same bucket bounds (members, peers)."""
    total: dict[float, float] = {}
    count = 0.0
    value_sum = 0.0
    any_entry = False
    for entry in entries:
        any_entry = True
        for le, cumulative in entry["buckets"]:
            total[_le(le)] = total.get(_le(le), 0.0) + cumulative
        count += entry["count"]
        value_sum += entry["sum"]
    if not any_entry:
        return None
    return {
        "labels": {},
        "buckets": [[_wire_le(le), c] for le, c in sorted(total.items())],
        "sum": value_sum,
        "count": count,
    }


def _bucket_of(entry: Mapping[str, Any], q: float) -> tuple[float, float, float, float, float] | None:
    """(lower bound, upper bound, count below, cumulative count, rank) of the bucket holding the
    q-quantile (0..1), buckets in ascending order; None without observations."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} outside 0..1")
    count = entry["count"]
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for le, cumulative in sorted(((_le(le), c) for le, c in entry["buckets"]), key=lambda pair: pair[0]):
        if cumulative >= rank and cumulative > below:
            return lower, le, below, cumulative, rank
        lower, below = le, cumulative
    return lower, math.inf, below, float(count), rank


def quantile_upper_bound(entry: Mapping[str, Any], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (0..1); None without observations,
    +inf when it lies above the largest finite bucket."""
    found = _bucket_of(entry, q)
    return None if found is None else found[1]


def quantile_interpolated(entry: Mapping[str, Any], q: float) -> float | None:
    """The q-quantile (0..1) the way Prometheus' histogram_quantile() reads it: linear
    interpolation inside the bucket that holds it (the first bucket starts at 0).  Its accuracy
    is the bucket's width; when it falls in the +Inf bucket, the largest finite bound."""
    found = _bucket_of(entry, q)
    if found is None:
        return None
    lower, upper, below, cumulative, rank = found
    if math.isinf(upper):
        return lower
    return lower + (upper - lower) * (rank - below) / (cumulative - below)


def mean(entry: Mapping[str, Any]) -> float | None:
    return entry["sum"] / entry["count"] if entry["count"] > 0 else None


def counter_total(snapshot: Mapping[str, Any], name: str) -> float | None:
    entries = (snapshot.get("counters") or {}).get(name)
    if not entries:
        return None
    return float(sum(entry["value"] for entry in entries))
