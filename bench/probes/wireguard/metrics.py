"""WireGuard / KubeSpan overhead, the metrics: per pair the node path's and the tunnel's throughput,
RTT and CPU cost read from the pair's one raw result (bench/probes/wireguard/driver.py writes it), and
KubeSpan's state per node and across the cluster.

A pair outside the bounded sample says so (not measured); a tunnel figure that did not provably
go through the tunnel (routed elsewhere, or WireGuard's counters short of iperf3's bytes) is
invalid, not judged; so is a ratio against a node path that is itself KubeSpan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from talbench.agents.probes.wireguard.probe import PROBE
from talbench.bench.metric import Metric
from talbench.bench.model import STORAGE_LABEL, Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.stats import Summary
from talbench.bench.units import Dimension

NAME = PROBE.name
TUNNEL_MIN_SHARE_OF_BYTES = 0.9  # WireGuard must have carried at least this share of iperf3's bytes


def _pair_key(subject: Subject) -> tuple[ResultKey, ...]:
    a, b = subject.nodes
    return (ResultKey(NAME, a, b),)


def _node_key(subject: Subject) -> tuple[ResultKey, ...]:
    return (ResultKey(NAME, subject.nodes[0]),)


def _not_sampled(data: Mapping[str, Any]) -> Observation | None:
    if data.get("sampled") is False:
        return Observation(None, not_measured=str(data.get("reason") or "outside the bounded sample"))
    return None


def _pair_metric(
    name: str,
    dimension: Dimension,
    lower_is_better: bool,
    observe_data: Callable[[Mapping[str, Any]], Observation],
    description: str,
) -> Metric:
    """A per-pair metric over the pair's one result; a pair outside the bounded sample says so."""

    def observe(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
        data = measurements[0].data
        return _not_sampled(data) or observe_data(data)

    return Metric(name, NAME, SubjectKind.PAIR, dimension, lower_is_better, observe, description, needs=_pair_key)


def _bps(path: Mapping[str, Any]) -> tuple[float | None, str | None]:
    iperf = path.get("iperf") or {}
    if iperf.get("error"):
        return None, str(iperf["error"])
    client = iperf.get("client") or {}
    value = client.get("received_bps")
    return (float(value), None) if isinstance(value, (int, float)) else (None, "no iperf3 figure")


def _gbit(value: float) -> str:
    return f"{value / 1e9:.3g} Gbit/s" if value >= 1e9 else f"{value / 1e6:.3g} Mbit/s"


def _tunnel_untrusted(data: Mapping[str, Any]) -> str | None:
    """Why the tunnel's throughput cannot be trusted to have gone through the tunnel."""
    tunnel = data.get("tunnel") or {}
    client = (tunnel.get("iperf") or {}).get("client") or {}
    dev = (client.get("route") or {}).get("dev")
    expected = (tunnel.get("interfaces") or {}).get(data.get("client"))
    if dev and expected and dev != expected:
        return f"iperf3 to the tunnel address was routed via {dev}, not the tunnel link {expected}"
    sent = tunnel.get("wg_tx_bytes")
    wanted = client.get("bytes_sent")
    if isinstance(sent, int) and isinstance(wanted, int) and sent < TUNNEL_MIN_SHARE_OF_BYTES * wanted:
        return f"WireGuard carried {sent} bytes, less than iperf3's {wanted}: traffic bypassed the tunnel"
    return None


def _throughput_metric(name: str, path: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        section = data.get(path) or {}
        value, error = _bps(section)
        via = section.get("via", path)
        if value is None:
            return Observation(None, detail=f"{via}: {error}")
        if path == "tunnel":
            untrusted = _tunnel_untrusted(data)
            if untrusted:
                return Observation(None, invalid=untrusted)
        client = (section.get("iperf") or {}).get("client") or {}
        detail = f"via {via}, {client.get('retransmits', '?')} retransmits, {client.get('seconds', 0):.3g}s"
        return Observation(value, len(client.get("intervals_bps") or ()), detail=detail, extra={"via": via})

    return _pair_metric(name, Dimension.BITRATE, False, observe, description)


def _observe_ratio(data: Mapping[str, Any]) -> Observation:
    node_path, tunnel = data.get("node_path") or {}, data.get("tunnel") or {}
    plain, plain_error = _bps(node_path)
    tunneled, tunnel_error = _bps(tunnel)
    if plain is None or tunneled is None:
        return Observation(None, detail="; ".join(e for e in (plain_error, tunnel_error) if e))
    if node_path.get("via") == "kubespan":
        return Observation(
            None,
            invalid=f"the node path runs through KubeSpan ({_gbit(plain)}), so there is no plain path to compare the tunnel ({_gbit(tunneled)}) with",
        )
    untrusted = _tunnel_untrusted(data)
    if untrusted:
        return Observation(None, invalid=untrusted)
    if plain <= 0:
        return Observation(None, invalid="the plain path carried nothing")
    return Observation(
        tunneled / plain,
        2,
        detail=f"tunnel {_gbit(tunneled)} vs plain {_gbit(plain)}",
        extra={"tunnel_bps": tunneled, "plain_bps": plain},
    )


def _rtt_samples(section: Mapping[str, Any]) -> tuple[list[float], int, int]:
    rtt = section.get("rtt") or {}
    return [ns / 1e9 for ns in rtt.get("samples_ns") or ()], int(rtt.get("sent", 0)), int(rtt.get("received", 0))


def _rtt_summary(data: Mapping[str, Any], path: str) -> tuple[Summary | None, str, str | None]:
    """Summary of one path's raw samples, a detail line, and a reason not to trust it."""
    samples, sent, received = _rtt_samples(data.get(path) or {})
    floor = int((data.get("settings") or {}).get("min_rtt_samples", 1))
    detail = f"n={received}/{sent}"
    if len(samples) < floor:
        return None, detail, f"too few {path.replace('_', ' ')} RTT samples ({len(samples)} < {floor})"
    return Summary.of(samples), detail, None


def _rtt_metric(name: str, path: str, field: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        summary, detail, untrusted = _rtt_summary(data, path)
        if summary is None:
            return Observation(None, invalid=untrusted, detail=detail)
        via = (data.get(path) or {}).get("via", path)
        return Observation(getattr(summary, field), summary.count, detail=f"via {via}, {detail}")

    return _pair_metric(name, Dimension.DURATION, True, observe, description)


def _observe_rtt_added(data: Mapping[str, Any]) -> Observation:
    plain, plain_detail, plain_bad = _rtt_summary(data, "node_path")
    tunnel, tunnel_detail, tunnel_bad = _rtt_summary(data, "tunnel")
    if plain is None or tunnel is None:
        return Observation(None, invalid=plain_bad or tunnel_bad)
    via = (data.get("node_path") or {}).get("via", "plain")
    reflector = (data.get("settings") or {}).get("rtt_reflector", "udp")
    return Observation(
        tunnel.p50 - plain.p50,
        plain.count + tunnel.count,
        detail=f"p50 tunnel {tunnel.p50 * 1e3:.3g} ms vs {via} {plain.p50 * 1e3:.3g} ms "
        f"({tunnel_detail}; {plain_detail}; {reflector} echo)",
    )


def _cpu_cores(iperf: Mapping[str, Any]) -> tuple[float | None, str]:
    """Cores busy during the transfer on the two machines (once when both agents share one)."""
    client = iperf.get("client") or {}
    server = iperf.get("server") or {}
    a = (client.get("cpu") or {}).get("busy_cores")
    b = (server.get("cpu") or {}).get("busy_cores")
    if not isinstance(a, (int, float)):
        return None, "no CPU figure"
    if not isinstance(b, (int, float)):
        return float(a), "client side only"
    if client.get("boot_id") and client.get("boot_id") == server.get("boot_id"):
        return (float(a) + float(b)) / 2, "both agents on one machine: counted once"
    return float(a) + float(b), "client + server"


def _cpu_metric(name: str, path: str, description: str) -> Metric:
    def observe(data: Mapping[str, Any]) -> Observation:
        section = data.get(path) or {}
        bps, error = _bps(section)
        if bps is None:
            return Observation(None, detail=str(error))
        cores, how = _cpu_cores(section.get("iperf") or {})
        if cores is None or bps <= 0:
            return Observation(None, detail=how)
        return Observation(cores / (bps / 1e9), 1, detail=f"{cores:.2f} cores busy at {_gbit(bps)} ({how})")

    return _pair_metric(name, Dimension.COUNT, True, observe, description)


def _observe_kubespan_cluster(
    subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]
) -> Observation:
    data = measurements[0].data
    states = data.get("kubespan") or {}
    active = sorted(n for n, state in states.items() if state.get("active"))
    unknown = data.get("unknown") or {}
    if active:
        return Observation(
            float(len(nodes)),
            len(states),
            detail=f"KubeSpan active on {', '.join(active)}; {len(nodes)} nodes",
            extra={"active": active},
        )
    if unknown:
        return Observation(None, invalid=f"KubeSpan state unknown on {', '.join(sorted(unknown))}")
    return Observation(0.0, len(states), detail=f"KubeSpan not active on any of {len(states)} nodes")


def _observe_kubespan_storage(
    subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]
) -> Observation:
    name = subject.nodes[0]
    node = next((n for n in nodes if n.name == name), None)
    storage = node is not None and STORAGE_LABEL in node.labels
    active = bool((measurements[0].data.get("kubespan") or {}).get("active"))
    role = "storage node" if storage else "not a storage node"
    return Observation(
        1.0 if storage and active else 0.0, 1, detail=f"KubeSpan {'active' if active else 'not active'}, {role}"
    )


WIREGUARD_METRICS: tuple[Metric, ...] = (
    _throughput_metric(
        "wireguard.node_throughput",
        "node_path",
        "TCP throughput between the node addresses (plain, or KubeSpan where it routes them)",
    ),
    _throughput_metric(
        "wireguard.tunnel_throughput", "tunnel", "TCP throughput through a WireGuard test tunnel between the two nodes"
    ),
    _pair_metric(
        "wireguard.throughput_ratio",
        Dimension.RATIO,
        False,
        _observe_ratio,
        "tunnel throughput as a share of the plain path's",
    ),
    _rtt_metric("wireguard.node_rtt_p50", "node_path", "p50", "median RTT between the node addresses"),
    _rtt_metric("wireguard.tunnel_rtt_p50", "tunnel", "p50", "median RTT through the WireGuard test tunnel"),
    _rtt_metric("wireguard.tunnel_rtt_p99", "tunnel", "p99", "99th percentile RTT through the WireGuard test tunnel"),
    _pair_metric(
        "wireguard.rtt_added",
        Dimension.DURATION,
        True,
        _observe_rtt_added,
        "median RTT the tunnel adds to the node path (p50 difference of raw samples)",
    ),
    _cpu_metric("wireguard.tunnel_cpu_per_gbit", "tunnel", "CPU cores busy per Gbit/s through the tunnel (both nodes)"),
    _cpu_metric(
        "wireguard.node_cpu_per_gbit", "node_path", "CPU cores busy per Gbit/s over the node path (both nodes)"
    ),
    Metric(
        "wireguard.kubespan_cluster_nodes",
        NAME,
        SubjectKind.CLUSTER,
        Dimension.COUNT,
        True,
        _observe_kubespan_cluster,
        "number of nodes in a cluster with KubeSpan active (0 when KubeSpan is off)",
        timed=False,
    ),
    Metric(
        "wireguard.kubespan_on_storage",
        NAME,
        SubjectKind.NODE,
        Dimension.COUNT,
        True,
        _observe_kubespan_storage,
        "1 when KubeSpan is active on a node labelled node-role.kubernetes.io/storage",
        needs=_node_key,
        timed=False,
    ),
)
