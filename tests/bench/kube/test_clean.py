"""``talbench clean``: what a crashed run left is found by label and removed (and waited for);
nothing that is not talbench's is touched."""

from __future__ import annotations

import argparse

import pytest

from talbench.bench.dispatch.kube import KubeDispatcher, parse_node_selector
from talbench.bench.errors import UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import connect
from talbench.bench.kube.deploy import create_agents
from tests.bench.kube.conftest import dispatcher_for


async def crash_leftovers(emu, spec: m.AgentSpec) -> None:
    """What a run killed with -9 leaves: its objects, created through the API, never removed."""
    async with connect(dispatcher_for(emu, emu.nodes["cp1"].workdir.parent).target()) as kube:
        await create_agents(kube, spec)


async def test_clean_removes_namespaces_left_by_crashed_runs_and_nothing_else(cluster, tmp_path):
    for run in ("crashed-1", "crashed-2"):
        await crash_leftovers(cluster, m.AgentSpec(run, m.run_namespace(run), "img", "tok"))
    # talbench's own CronJob namespace (no run id) and a user's namespace stay
    cluster._put(
        "v1", "namespaces", None, {"metadata": {"name": "talbench", "labels": {m.LABEL_MANAGED_BY: "talbench"}}}
    )
    cluster._put("v1", "namespaces", None, {"metadata": {"name": "shop", "labels": {m.LABEL_RUN_ID: "crashed-1"}}})
    removed = await dispatcher_for(cluster, tmp_path).clean()
    assert removed == ["namespace talbench-crashed-1", "namespace talbench-crashed-2"]
    assert cluster.run_objects("crashed-2") == []
    assert sorted(ns["metadata"]["name"] for ns in cluster.objects("namespaces")) == ["shop", "talbench"]
    assert await dispatcher_for(cluster, tmp_path).clean() == []  # repeatable


async def test_clean_in_a_shared_namespace_removes_only_run_objects(cluster, tmp_path):
    cluster._put(
        "v1",
        "namespaces",
        None,
        {"metadata": {"name": "talbench", "labels": m.PSA_LABELS}, "status": {"phase": "Active"}},
    )
    cluster._put("v1", "secrets", "talbench", {"metadata": {"name": "unrelated"}})
    await crash_leftovers(cluster, m.AgentSpec("crashed-3", "talbench", "img", "tok", own_namespace=False))
    removed = await dispatcher_for(cluster, tmp_path, namespace="talbench").clean(run_id="crashed-3")
    assert sorted(removed) == [
        "daemonset talbench/talbench-agent-crashed-3",
        "secret talbench/talbench-agent-crashed-3-token",
        "serviceaccount talbench/talbench-agent-crashed-3",
    ]
    assert cluster.run_objects("crashed-3") == [] and cluster.store.get(("v1", "secrets", "talbench", "unrelated"))


def test_cli_options_map_to_the_dispatcher():
    args = argparse.Namespace(
        kubeconfig="/k", context="prod", namespace=None, image="reg/tb:1", node_selector=["disk=nvme,zone=a", "rack=3"]
    )
    options = KubeDispatcher.from_args(args).options
    assert (options.kubeconfig, options.context, options.image) == ("/k", "prod", "reg/tb:1")
    assert options.node_selector == {"disk": "nvme", "zone": "a", "rack": "3"}
    assert KubeDispatcher.from_args(argparse.Namespace()).options.image is None  # clean needs none
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_node_selector(["disk"])
