"""WireGuard driver: settings, pair sample, and the judge rules that depend on the cluster's shape
(node facts: how many nodes, which carry the storage label) rather than on a measured figure.
Rules that depend on a measurement are tested with real lab runs in test_wireguard_lab.py."""

from __future__ import annotations

from typing import Any

import pytest

from talbench.agents.params import describe, validate, wire
from talbench.agents.probes.rtt.probe import RttParams
from talbench.agents.probes.wireguard.iperf import IperfSettings
from talbench.agents.probes.wireguard.probe import PING_JOB, PROBE, WireguardSettings
from talbench.agents.probes.wireguard.tunnel import TunnelLink
from talbench.bench.errors import ScenarioError
from talbench.bench.judge import judge_subject
from talbench.bench.model import (
    CLUSTER_NODE,
    CONTROL_PLANE_LABEL,
    STORAGE_LABEL,
    Check,
    Measurement,
    Node,
    ResultKey,
    Role,
    Scope,
    Status,
    Subject,
)
from talbench.bench.probes import default_drivers
from talbench.bench.probes.wireguard.driver import WireguardDriver, pair_sample
from talbench.bench.probes.wireguard.pair import ping_params, reflector_of, rtt_settings, shared, tunnel_addresses
from talbench.bench.run import metrics_of
from talbench.bench.scenario import load
from talbench.bench.units import parse_quantity

DRIVERS = {"wireguard": WireguardDriver()}
METRICS = metrics_of(DRIVERS)


def settings_of(raw: dict[str, Any], *, quick: bool) -> WireguardSettings:
    return DRIVERS["wireguard"].settings(raw, quick=quick)


def cluster(control_planes: int, workers: int, storage: tuple[str, ...] = ()) -> tuple[Node, ...]:
    made = [
        Node(f"cp{i}", Role.CONTROL_PLANE, f"10.0.0.{i}", {CONTROL_PLANE_LABEL: ""})
        for i in range(1, control_planes + 1)
    ]
    made += [
        Node(f"w{i}", Role.WORKER, f"10.0.1.{i}", {STORAGE_LABEL: ""} if f"w{i}" in storage else {})
        for i in range(1, workers + 1)
    ]
    return tuple(made)


def check(metric: str, scope: Scope, *, warn: object = None, fail: object = None) -> Check:
    dimension = METRICS[metric].dimension
    return Check(
        metric.split(".")[1],
        metric,
        scope,
        None if warn is None else parse_quantity(warn, dimension),
        None if fail is None else parse_quantity(fail, dimension),
        "test",
    )


def detections(nodes: tuple[Node, ...], active: set[str]) -> dict[ResultKey, Measurement]:
    """What the driver returns for the KubeSpan keys when ``active`` nodes have KubeSpan up."""
    states = {n.name: {"active": n.name in active} for n in nodes}
    cluster_key = ResultKey("wireguard", CLUSTER_NODE)
    results = {cluster_key: Measurement(cluster_key, True, data={"kubespan": states, "unknown": {}})}
    for n in nodes:
        results[ResultKey("wireguard", n.name)] = Measurement(
            ResultKey("wireguard", n.name), True, data={"kubespan": states[n.name]}
        )
    return results


# -- cluster-shape rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "active", "status"),
    [
        (98, {"cp1"}, Status.FAIL),  # 3 + 98 = 101 nodes with KubeSpan
        (97, {"cp1"}, Status.PASS),  # 100 nodes: still within the recommendation
        (150, set(), Status.PASS),  # big cluster without KubeSpan: fine
    ],
)
def test_kubespan_cluster_size_rule_counts_nodes(workers: int, active: set[str], status: Status) -> None:
    nodes = cluster(3, workers)
    rule = check("wireguard.kubespan_cluster_nodes", Scope.CLUSTER, fail=101)
    verdict = judge_subject(rule, METRICS[rule.metric], Subject(()), detections(nodes, active), nodes)
    assert verdict.status is status
    assert verdict.observed == (float(len(nodes)) if active else 0.0)


def test_kubespan_on_more_than_100_nodes_fails() -> None:
    nodes = cluster(3, 98)  # 101 nodes
    rule = check("wireguard.kubespan_cluster_nodes", Scope.CLUSTER, fail=101)
    verdict = judge_subject(rule, METRICS[rule.metric], Subject(()), detections(nodes, {"w7"}), nodes)
    assert verdict.status is Status.FAIL and "w7" in verdict.detail


def test_kubespan_state_unknown_somewhere_is_not_a_pass() -> None:
    nodes = cluster(3, 1)
    results = detections(nodes, set())
    key = ResultKey("wireguard", CLUSTER_NODE)
    results[key] = Measurement(key, True, data={"kubespan": {}, "unknown": {"w1": "agent not ready"}})
    rule = check("wireguard.kubespan_cluster_nodes", Scope.CLUSTER, fail=101)
    assert judge_subject(rule, METRICS[rule.metric], Subject(()), results, nodes).status is Status.INVALID


@pytest.mark.parametrize(
    ("node", "active", "status"),
    [
        ("w1", {"w1"}, Status.WARN),  # storage node with KubeSpan
        ("w2", {"w2"}, Status.PASS),  # KubeSpan on a plain worker: not this rule's business
        ("w1", set(), Status.PASS),  # storage node without KubeSpan
    ],
)
def test_kubespan_on_storage_nodes_warns(node: str, active: set[str], status: Status) -> None:
    nodes = cluster(3, 2, storage=("w1",))
    rule = check("wireguard.kubespan_on_storage", Scope.ALL_NODES, warn=1)
    verdict = judge_subject(rule, METRICS[rule.metric], Subject((node,)), detections(nodes, active), nodes)
    assert verdict.status is status


def test_throughput_ratio_is_not_judged_when_the_node_path_is_kubespan() -> None:
    key = ResultKey("wireguard", "cp1", "cp2")
    data = {
        "sampled": True,
        "client": "cp1",
        "node_path": {"via": "kubespan", "iperf": {"client": {"received_bps": 9e8}}},
        "tunnel": {"interfaces": {"cp1": "tbx"}, "iperf": {"client": {"received_bps": 8e8, "route": {"dev": "tbx"}}}},
    }
    rule = check("wireguard.throughput_ratio", Scope.ALL_PAIRS, warn="50 %")
    verdict = judge_subject(
        rule, METRICS[rule.metric], Subject(("cp1", "cp2")), {key: Measurement(key, True, data=data)}, cluster(3, 0)
    )
    assert verdict.status is Status.INVALID and "KubeSpan" in verdict.message


def test_unsampled_pairs_say_so() -> None:
    key = ResultKey("wireguard", "w1", "w2")
    data = {"sampled": False, "reason": "outside the bounded sample of other pairs (max_other_pairs=0)"}
    rule = check("wireguard.tunnel_throughput", Scope.OTHER_PAIRS)
    verdict = judge_subject(
        rule, METRICS[rule.metric], Subject(("w1", "w2")), {key: Measurement(key, True, data=data)}, cluster(1, 2)
    )
    # planned not to be measured: reported as such, neither a pass nor a missing result
    assert (
        verdict.status is Status.INFO
        and verdict.message == "not measured: outside the bounded sample of other pairs (max_other_pairs=0)"
    )


# -- settings, sample, addresses ------------------------------------------------------------------


def test_the_driver_is_discovered_with_its_declaration() -> None:
    driver = default_drivers()["wireguard"]
    assert (
        isinstance(driver, WireguardDriver)
        and driver.declaration is PROBE
        and driver.settings_model is WireguardSettings
    )
    assert sorted(job.name for job in PROBE.jobs) == ["wireguard.iperf", "wireguard.ping", "wireguard.tunnel"]


def test_scenario_names_defaults_and_the_coordinators_own() -> None:
    settings = settings_of({}, quick=False)
    assert (settings.duration, settings.omit, settings.rtt_count, settings.rtt_interval) == (10.0, 1, 300, 0.01)
    assert (settings.implementation, settings.listen_port, settings.tunnel_subnet) == ("auto", 51830, "198.18.0.0/16")
    docs = {doc.name: doc for doc in describe(WireguardSettings)}
    assert {name for name, doc in docs.items() if doc.coordinator_only} == {"min_rtt_samples", "max_other_pairs"}
    assert docs["duration"].unit == docs["rtt_interval"].unit == "seconds"
    # the jobs are sent the part of the settings they inherit, under the same names
    assert shared(settings, IperfSettings) == {"duration": 10.0, "omit": 1, "streams": 1}
    assert shared(settings, TunnelLink) == {"implementation": "auto", "mtu": 1420}


def test_the_rtt_job_is_built_from_the_rtt_declaration() -> None:
    settings = settings_of(
        {"rtt_count": 200, "rtt_interval": "5ms", "rtt_warmup": 3, "min_rtt_samples": 50}, quick=False
    )
    rtt = rtt_settings(settings)
    assert (rtt.count, rtt.interval, rtt.warmup, rtt.stagger) == (200, 0.005, 3, 0.0)
    params = validate(RttParams, {**wire(rtt), "peers": [{"name": "tunnel", "host": "198.18.0.2", "port": 51900}]})
    assert params.count == 200 and "min_samples" not in wire(rtt)


def test_the_rtt_reflector_is_the_kernel_through_a_userspace_tunnel() -> None:
    auto = settings_of({}, quick=False)
    assert auto.rtt_reflector == "auto"
    assert reflector_of(auto, ["wireguard-go", "wireguard-go"])[0] == "icmp"
    assert reflector_of(auto, ["kernel", "wireguard-go"])[0] == "icmp"
    assert reflector_of(auto, ["kernel", "kernel"])[0] == "udp"
    assert reflector_of(settings_of({"rtt_reflector": "udp"}, quick=False), ["wireguard-go"])[0] == "udp"
    assert reflector_of(settings_of({"rtt_reflector": "icmp"}, quick=False), ["kernel"])[0] == "icmp"
    with pytest.raises(ScenarioError):
        settings_of({"rtt_reflector": "tcp"}, quick=False)
    # the ICMP job is asked for the RTT run the RTT probe would be asked for
    settings = settings_of({"rtt_count": 200, "rtt_interval": "5ms", "rtt_warmup": 3}, quick=False)
    params = PING_JOB.parse(ping_params(settings, [{"name": "tunnel", "host": "198.18.0.2"}]))
    assert (params.count, params.interval, params.warmup) == (200, 0.005, 3)


def test_quick_shortens_transfers_and_rtt() -> None:
    full = settings_of({"duration": "10s", "rtt_count": 300}, quick=False)
    quick = settings_of({"duration": "10s", "rtt_count": 300}, quick=True)
    assert full.duration == 10 and quick.duration == 2 and quick.omit == 0 and quick.rtt_count < full.rtt_count
    assert quick.min_rtt_samples <= quick.rtt_count // 2


def test_plain_numbers_are_seconds() -> None:
    assert settings_of({"duration": 5, "rtt_interval": 0.02}, quick=False).duration == 5.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"listen_port": 51800}, "listen_port 51800..51863 would include KubeSpan's port"),
        ({"echo_port": 51790}, "echo_port .* KubeSpan's port"),
        ({"listen_port": 65500}, "listen_port must be at most"),
        ({"duration": "90s"}, "duration must be at most"),
        ({"duration": "fast"}, "duration"),
        ({"rtt_interval": "2s"}, "rtt_interval"),
        ({"rtt_count": 5}, "rtt_count"),
        ({"omit": 1.5}, "omit"),
        ({"tunnel_subnet": "8.8.8.0/24"}, "tunnel_subnet: must be a private"),
        ({"tunnel_subnet": "10.0.0.0/28"}, "tunnel_subnet: must be a private IPv4 range of /24"),
        ({"tunnel_subnet": "fd00::/64"}, "tunnel_subnet"),
        ({"tunnel_subnet": "10.0.0.1/16"}, "tunnel_subnet"),
        ({"implementation": "boringtun"}, "implementation"),
        ({"min_rtt_samples": 400}, "min_rtt_samples 400 exceeds rtt_count 300"),
        ({"max_other_pairs": -1}, "max_other_pairs"),
        ({"bogus": 1}, "unknown parameter 'bogus'"),
        ({"quick": True}, "unknown parameter 'quick'"),
    ],
)
def test_bad_settings_are_scenario_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        settings_of(raw, quick=False)


def test_pair_sample_keeps_every_control_plane_pair_and_caps_the_rest() -> None:
    names = [f"cp{i}" for i in range(1, 4)] + [f"w{i}" for i in range(1, 11)]
    pairs = [(a, b) for i, a in enumerate(sorted(names)) for b in sorted(names)[i + 1 :]]
    measured, left = pair_sample(pairs, {"cp1", "cp2", "cp3"}, 4)
    control = [p for p in measured if set(p) <= {"cp1", "cp2", "cp3"}]
    assert len(control) == 3 and len(measured) == 7 and len(measured) + len(left) == len(pairs)
    assert pair_sample(list(reversed(pairs)), {"cp1", "cp2", "cp3"}, 4) == (measured, left)  # deterministic


def test_each_pair_gets_its_own_slash_30() -> None:
    assert tunnel_addresses("198.18.0.0/16", 0) == ("198.18.0.1/30", "198.18.0.2/30")
    assert tunnel_addresses("198.18.0.0/16", 3) == ("198.18.0.13/30", "198.18.0.14/30")


def test_the_kubespan_scenario_loads() -> None:
    from pathlib import Path

    scenario = load(
        Path(__file__).parents[3] / "scenarios" / "kubespan.yaml",
        METRICS,
        lambda probe, raw: DRIVERS[probe].settings(raw, quick=False),
    )
    names = {c.name for c in scenario.checks}
    assert {
        "kubespan-cluster-size",
        "kubespan-on-storage-nodes",
        "tunnel-throughput-share",
        "control-plane-tunnel-rtt",
    } <= names
    assert all(c.source for c in scenario.checks)
