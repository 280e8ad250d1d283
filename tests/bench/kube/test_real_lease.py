"""A run's deadline renewed while it runs, on a real API server, as an identity holding only the
roles ``talbench manifests`` prints (bench/kube/lease.py): ``talbench clean`` at a time past
the run's first deadline leaves it alone; with the renewal's rule taken away the run goes on and
says the deadline was not renewed."""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import connect
from talbench.bench.kube.config import resolve_target
from talbench.bench.kube.deploy import clean, create_agents, remove_agents
from talbench.bench.kube.lease import deadline_kept
from tests.bench.kube.real_cluster import RealCluster
from tests.bench.kube.real_objects import Objects

pytestmark = [pytest.mark.root("ip", "sysctl", "runc"), pytest.mark.lab]

SUFFIX = secrets.token_hex(3)
HOUR = 3600.0


@pytest.fixture(scope="module")
def objects(real_cluster: RealCluster) -> Iterator[Objects]:
    made = Objects(real_cluster, f"tblease-{SUFFIX}")
    made.namespace(made.home)
    try:
        yield made
    finally:
        made.remove()


def roles(cluster: RealCluster, *args: str) -> list[dict[str, Any]]:
    done = cluster.cli("manifests", "--rbac", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] in ("Role", "ClusterRole")]


def without_patch(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs = copy.deepcopy(docs)
    for doc in docs:
        doc["metadata"]["name"] += "-nopatch"
        for rule in doc["rules"]:
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "patch"]
    return docs


def spec_for(run: str, namespace: str | None) -> m.AgentSpec:
    """A run whose DaemonSet matches no node: the objects are real, no pod is started."""
    return m.AgentSpec(
        run_id=run,
        namespace=namespace or m.run_namespace(run),
        image="localhost/talbench:none",
        token="t",
        node_selector={"talbench.io/test-no-such-node": "1"},
        own_namespace=namespace is None,
    )


async def renewed_run(kubeconfig: str, spec: m.AgentSpec, *, admin: str) -> tuple[dict[str, Any], list[str]]:
    """Create the run's objects, hold them while the deadline is renewed (every 0.3 s, on a clock
    3 h ahead), then run ``clean`` (admin, no run id) as if 2.5 h had passed: (state, its lines)."""
    ahead = 3 * HOUR
    async with connect(resolve_target(kubeconfig)) as kube:
        created: list[dict[str, Any]] = []
        try:
            await create_agents(kube, spec, created)
            state: dict[str, Any] = {}
            async with deadline_kept(kube, spec, state, every=0.3, clock=lambda: time.time() + ahead):
                await asyncio.sleep(1.5)
            async with connect(resolve_target(admin)) as admin_kube:
                lines = await clean(admin_kube, namespace=None if spec.own_namespace else spec.namespace,
                                    now=time.time() + 2.5 * HOUR, timeout=30)  # fmt: skip
            return state, lines
        finally:
            await remove_agents(kube, spec, created, timeout=60)


@pytest.mark.parametrize("mode", ["own-namespace", "namespace"])
async def test_the_deadline_is_renewed_with_only_the_printed_roles_and_clean_leaves_the_run(
    real_cluster, objects, tmp_path, mode
):
    run = f"lease-{mode[:3]}-{SUFFIX}"
    shared = None
    if mode == "namespace":
        shared = objects.namespace(f"tblease-ns-{SUFFIX}", m.PSA_LABELS)
    docs = roles(real_cluster, *(["--namespace", shared] if shared else []))
    objects.apply(yaml.safe_dump_all(docs))
    kubeconfig = objects.identity(f"lease-{mode[:3]}", docs, tmp_path)
    state, lines = await renewed_run(str(kubeconfig), spec_for(run, shared), admin=str(real_cluster.kubeconfig))
    assert "problem" not in state, state
    assert state["renewed"] >= 2, state
    assert m.parse_time(state["until"]) > time.time() + 4 * HOUR  # now + 3 h (the clock) + RUN_DEADLINE_S
    assert any(run in line and "alone" in line for line in lines), lines  # in flight: not removed
    assert not any(line.startswith("removed") and run in line for line in lines), lines


async def test_without_the_patch_rule_the_run_goes_on_and_says_its_deadline_was_not_renewed(
    real_cluster, objects, tmp_path
):
    docs = without_patch(roles(real_cluster))
    objects.apply(yaml.safe_dump_all(docs))
    kubeconfig = objects.identity("lease-nopatch", docs, tmp_path)
    state, _ = await renewed_run(
        str(kubeconfig), spec_for(f"lease-nop-{SUFFIX}", None), admin=str(real_cluster.kubeconfig)
    )
    assert state["renewed"] == 0
    assert state["problem"].startswith("not renewed: ") and "patch" in state["problem"], state
    assert "talbench clean" in state["problem"]
