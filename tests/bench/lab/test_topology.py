"""The address plan and the --delay option, without touching the system."""

from __future__ import annotations

import ipaddress

import pytest

from talbench.bench.errors import UsageError
from talbench.bench.lab.topology import (
    LAB_NETWORK,
    LabSpec,
    NodeDelay,
    lab_id_of_namespace,
    make_spec,
    new_lab_id,
    parse_delay,
    plan_lab,
)
from talbench.bench.model import CONTROL_PLANE_LABEL, Role


def test_default_lab_has_three_control_planes_and_one_worker_on_the_bridge():
    plan = plan_lab(make_spec(), "lab00aa11")
    assert [n.name for n in plan.nodes] == ["cp1", "cp2", "cp3", "w1"]
    assert [n.namespace for n in plan.nodes] == [f"tb-lab00aa11-{n}" for n in ("cp1", "cp2", "cp3", "w1")]
    assert plan.bridge_namespace == "tb-lab00aa11-br"
    assert plan.router_namespace is None and plan.router_legs == ()
    assert {n.segment for n in plan.nodes} == {"10.213.0.0/24"}
    assert all(n.via is None for n in plan.nodes)  # no router: no route beyond the segment
    assert len({n.address for n in plan.nodes}) == 4


def test_a_delayed_node_gets_its_own_segment_behind_the_router():
    plan = plan_lab(make_spec(3, 1, ["cp3=10ms", "w1=5:1"]), "lab00aa11")
    cp3, w1, cp1 = plan.node("cp3"), plan.node("w1"), plan.node("cp1")
    assert plan.router_namespace == "tb-lab00aa11-rt"
    assert cp3.delay == NodeDelay("cp3", 10.0, 0.0) and w1.delay == NodeDelay("w1", 5.0, 1.0)
    assert cp3.segment != w1.segment and "10.213.0.0/24" not in (cp3.segment, w1.segment)
    assert cp3.via == str(ipaddress.ip_network(cp3.segment).network_address + 1)
    assert cp1.via == "10.213.0.1" and cp1.delay is None  # undelayed nodes reach them via the router
    legs = {leg.device: leg for leg in plan.router_legs}
    assert legs["eth0"].address == "10.213.0.1" and legs["d-cp3"].address == cp3.via
    for node in plan.nodes:
        assert ipaddress.ip_address(node.address) in LAB_NETWORK
        assert len(node.peer_device) <= 15  # kernel interface name limit


def test_node_records_carry_kubernetes_like_labels_and_taints():
    plan = plan_lab(make_spec(2, 1), "lab00aa11")
    cp1, w1 = plan.node("cp1").to_node(), plan.node("w1").to_node()
    assert cp1.role is Role.CONTROL_PLANE and cp1.labels[CONTROL_PLANE_LABEL] == ""
    assert cp1.labels["kubernetes.io/hostname"] == "cp1"
    assert cp1.taints == ("node-role.kubernetes.io/control-plane:NoSchedule",)
    assert w1.role is Role.WORKER and CONTROL_PLANE_LABEL not in w1.labels and w1.taints == ()
    assert cp1.address == plan.node("cp1").address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cp3=10ms", NodeDelay("cp3", 10.0, 0.0)),
        ("cp3=10", NodeDelay("cp3", 10.0, 0.0)),
        ("cp3=10ms:2ms", NodeDelay("cp3", 10.0, 2.0)),
        ("cp3=10:2", NodeDelay("cp3", 10.0, 2.0)),
        ("w1=0.5s", NodeDelay("w1", 500.0, 0.0)),
        ("w1=1500us", NodeDelay("w1", 1.5, 0.0)),
    ],
)
def test_delay_option_forms(text, expected):
    assert parse_delay(text) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["cp9=10ms"], "unknown node 'cp9'"),
        (["cp3"], "expected NODE=MS"),
        (["=10ms"], "expected NODE=MS"),
        (["cp3="], "expected NODE=MS"),
        (["cp3=fast"], "bad delay 'fast'"),
        (["cp3=10kg"], "bad delay"),
        (["cp3=-5"], "bad delay"),
        (["cp3=0"], "above 0"),
        (["cp3=10ms:nope"], "bad jitter"),
        (["cp3=10ms:20ms"], "must not exceed"),
        (["cp3=10ms", "cp3=5ms"], "delayed twice"),
        (["cp3=99999"], "at most"),
    ],
)
def test_bad_delay_options_are_usage_errors_with_one_line(options, message):
    with pytest.raises(UsageError) as caught:
        make_spec(3, 1, options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("cps", "workers"), [(0, 1), (-1, 0), (33, 0), (3, -1), (3, 65)])
def test_node_counts_out_of_range_are_usage_errors(cps, workers):
    with pytest.raises(UsageError):
        make_spec(cps, workers)


def test_lab_namespaces_are_told_apart_from_other_tb_namespaces():
    lab_id = new_lab_id()
    assert lab_id_of_namespace(f"tb-{lab_id}-cp1") == lab_id
    assert lab_id_of_namespace(f"tb-{lab_id}-br") == lab_id
    assert lab_id_of_namespace("tb-3f9a2c-a") is None  # another test's namespace: not a lab's
    assert lab_id_of_namespace("tb-lab12-cp1") is None
    assert lab_id_of_namespace("other") is None
    assert new_lab_id() != lab_id


def test_plan_refuses_a_malformed_lab_id():
    with pytest.raises(UsageError):
        plan_lab(LabSpec(), "../etc")
