"""A real lab of network namespaces: isolation from the root namespace and the delay line.

Traffic goes only between namespaces of the lab built here; nothing is ever sent to a lab
address from the root namespace (it has no route there, and must not).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from talbench.bench.lab import processes
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec, make_spec
from tests.bench.lab.helpers import lab_namespaces, ping_rtts_ms, run, running_lab

pytestmark = [pytest.mark.root("ip", "ping"), pytest.mark.lab]


@pytest.fixture(scope="module")
def delayed_lab() -> Iterator[LabState]:
    spec: LabSpec = make_spec(3, 1, ["cp3=10ms"])
    with running_lab(spec, start_agents=False) as state:
        yield state


def test_one_namespace_per_node_plus_bridge_and_router(delayed_lab):
    expected = {f"tb-{delayed_lab.lab_id}-{suffix}" for suffix in ("cp1", "cp2", "cp3", "w1", "br", "rt")}
    assert set(lab_namespaces(delayed_lab.lab_id)) == expected
    assert set(delayed_lab.namespaces) == expected


def test_nothing_of_the_lab_exists_in_the_root_namespace(delayed_lab):
    addrs = run(["ip", "-o", "addr"]).stdout
    links = run(["ip", "-o", "-d", "link"]).stdout
    routes = run(["ip", "route", "show", "table", "all"]).stdout
    rules = run(["ip", "rule"]).stdout
    for node in delayed_lab.nodes:
        assert f"{node.address}/" not in addrs and node.address not in routes
    assert "10.213." not in addrs + routes + rules
    assert delayed_lab.lab_id not in links  # no veth whose peer sits in a lab namespace
    for device in ("br0", "tbdelay", "n-cp1", "n-rt", "d-cp3"):
        assert f": {device}:" not in links and f": {device}@" not in links


def test_no_lab_namespace_has_a_default_route_or_a_way_out(delayed_lab):
    for namespace in delayed_lab.namespaces:
        routes = run(["ip", "-n", namespace, "route", "show", "table", "all"]).stdout
        assert "default" not in routes and "0.0.0.0/0" not in routes, namespace
    for node in delayed_lab.nodes:
        # route lookup only (no packet): the host's own network is unreachable from a node
        lookup = run(["ip", "-n", node.namespace, "route", "get", "192.0.2.1"])
        assert lookup.returncode != 0 and "unreachable" in lookup.stderr.lower()


def test_undelayed_nodes_ping_each_other_fast(delayed_lab):
    cp1, cp2, w1 = (delayed_lab.node(n) for n in ("cp1", "cp2", "w1"))
    to_cp2 = ping_rtts_ms(cp1.namespace, cp2.address)
    to_w1 = ping_rtts_ms(w1.namespace, cp1.address)
    assert len(to_cp2) == 5 and len(to_w1) == 5, (to_cp2, to_w1)
    assert statistics.median(to_cp2) < 5.0 and statistics.median(to_w1) < 5.0, (to_cp2, to_w1)


def test_the_delayed_node_is_ten_ms_away_each_way(delayed_lab):
    cp1, cp2, cp3 = (delayed_lab.node(n) for n in ("cp1", "cp2", "cp3"))
    from_cp1 = ping_rtts_ms(cp1.namespace, cp3.address)
    from_cp3 = ping_rtts_ms(cp3.namespace, cp2.address)
    assert len(from_cp1) == 5 and len(from_cp3) == 5, (from_cp1, from_cp3)
    assert min(from_cp1) >= 19.0 and min(from_cp3) >= 19.0, (from_cp1, from_cp3)  # 10 ms each way
    assert statistics.median(from_cp1) < 40.0, from_cp1


def test_the_delay_line_runs_inside_the_router_namespace(delayed_lab):
    assert delayed_lab.router_namespace is not None and delayed_lab.delayline_pid is not None
    pids = run(["ip", "netns", "pids", delayed_lab.router_namespace]).stdout.split()
    assert str(delayed_lab.delayline_pid) in pids
    assert processes.alive(delayed_lab.delayline_pid)
