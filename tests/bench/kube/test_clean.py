"""``talbench clean`` where a real cluster cannot serve: time passing.  A run's objects carry its
deadline; past it (``now`` moved forward) they are leftovers, before it another user's run in
flight.  What clean removes and leaves on a real API server is in test_real_rbac.py."""

from __future__ import annotations

import time

import pytest

from talbench.bench.cli import build_parser
from talbench.bench.cli.options import kube_options, parse_node_selector
from talbench.bench.errors import UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import connect
from talbench.bench.kube.deploy import clean, create_agents
from tests.bench.kube.conftest import dispatcher_for


def later() -> float:
    """A minute past the deadline of a run started now."""
    return time.time() + m.RUN_DEADLINE_S + 60


async def test_a_run_is_in_flight_until_its_deadline_and_a_leftover_after_it(cluster, tmp_path):
    spec = m.AgentSpec("crashed-1", m.run_namespace("crashed-1"), "img", "tok")
    async with connect(dispatcher_for(cluster, tmp_path).target()) as kube:
        await create_agents(kube, spec)
        deadline = cluster.store[("v1", "namespaces", None, spec.namespace)]["metadata"]["annotations"]
        assert m.parse_time(deadline[m.ANNOTATION_DEADLINE]) == pytest.approx(time.time() + m.RUN_DEADLINE_S, abs=60)
        (line,) = await clean(kube, poll_interval=0.1)
        assert line.startswith("left namespace talbench-crashed-1 alone: run crashed-1 is in flight until ")
        assert "'talbench clean --run-id crashed-1' removes it" in line
        assert await clean(kube, poll_interval=0.1, now=later()) == ["removed namespace talbench-crashed-1"]
    assert cluster.run_objects("crashed-1") == []


async def test_objects_of_an_older_talbench_count_from_their_creation(cluster, tmp_path):
    labels = {m.LABEL_MANAGED_BY: m.MANAGED_BY, m.LABEL_RUN_ID: "old-1"}
    cluster._put("v1", "namespaces", None, {"metadata": {"name": "talbench-old-1", "labels": labels}})
    async with connect(dispatcher_for(cluster, tmp_path).target()) as kube:
        assert "in flight" in (await clean(kube, poll_interval=0.1))[0]
        assert await clean(kube, poll_interval=0.1, now=later()) == ["removed namespace talbench-old-1"]


async def test_in_a_shared_namespace_only_expired_runs_objects_go(cluster, tmp_path):
    cluster._put(
        "v1", "namespaces", None, {"metadata": {"name": "bench", "labels": m.PSA_LABELS}, "status": {"phase": "Active"}}
    )
    async with connect(dispatcher_for(cluster, tmp_path).target()) as kube:
        await create_agents(kube, m.AgentSpec("crashed-3", "bench", "img", "tok", own_namespace=False))
        (line,) = await clean(kube, namespace="bench", poll_interval=0.1)
        assert line.startswith(
            "left the objects of run crashed-3 in namespace bench alone: the run is in flight until "
        )
        removed = await clean(kube, namespace="bench", poll_interval=0.1, now=later())
    assert sorted(removed) == [
        "removed daemonset bench/talbench-agent-crashed-3",
        "removed secret bench/talbench-agent-crashed-3-token",
        "removed serviceaccount bench/talbench-agent-crashed-3",
    ]
    assert cluster.run_objects("crashed-3") == []


def test_cli_options_map_to_the_dispatcher():
    parser = build_parser()
    selectors = ["--node-selector", "disk=nvme,zone=a", "--node-selector", "rack=3"]
    args = parser.parse_args(
        ["run", "--scenario", "x", "--kubeconfig", "/k", "--context", "prod", "--image", "reg/tb:1", *selectors]
    )
    options = kube_options(args)
    assert (options.kubeconfig, options.context, options.image) == ("/k", "prod", "reg/tb:1")
    assert options.node_selector == {"disk": "nvme", "zone": "a", "rack": "3"}
    assert kube_options(parser.parse_args(["clean"])).image is None  # clean needs none
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_node_selector(["disk"])
