"""The shared ``lab`` fixture: a real agent per node, reachable over its unix socket, and the
agents reach each other over the lab network."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from talbench.bench.lab.processes import agent_health
from talbench.bench.model import CONTROL_PLANE_LABEL, Role
from tests.bench.lab.helpers import run

pytestmark = [pytest.mark.root("ip"), pytest.mark.lab]

FETCH_HEALTH = textwrap.dedent(
    """
    import sys, urllib.request
    with urllib.request.urlopen(f"http://{sys.argv[1]}/v1/health", timeout=3) as answer:
        print(answer.read().decode())
    """
)


def test_every_node_runs_an_agent_that_answers_on_its_unix_socket(lab):
    assert [n.name for n in lab.nodes] == ["cp1", "cp2", "cp3", "w1"]
    for node in lab.nodes:
        assert agent_health(node.socket) is None, node.name
        assert node.pid is not None and str(node.pid) in run(["ip", "netns", "pids", node.namespace]).stdout.split()
        assert node.data_dir.is_dir() and node.data_dir == lab.lab_dir / "nodes" / node.name / "data"


def test_agents_reach_each_other_over_the_lab_network(lab):
    cp1, w1 = lab.node("cp1"), lab.node("w1")
    done = run(
        ["ip", "netns", "exec", cp1.namespace, sys.executable, "-c", FETCH_HEALTH, f"{w1.address}:{w1.port}"],
        timeout=15,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["node"] == "w1"


def test_lab_nodes_are_kubernetes_like(lab):
    nodes = {n.name: n for n in lab.cluster_nodes()}
    assert nodes["cp1"].role is Role.CONTROL_PLANE and nodes["cp1"].labels[CONTROL_PLANE_LABEL] == ""
    assert nodes["cp2"].taints == ("node-role.kubernetes.io/control-plane:NoSchedule",)
    assert nodes["w1"].role is Role.WORKER and CONTROL_PLANE_LABEL not in nodes["w1"].labels
    assert {n.address for n in nodes.values()} == {n.address for n in lab.nodes}
