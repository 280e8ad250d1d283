"""RBAC grants nothing beyond what a run uses: every request the dispatcher (and clean, and the
CronJob's result keeping) makes against the API emulator is recorded and compared, both ways,
with the rules talbench generates."""

from __future__ import annotations

from talbench.bench.kube import cronjob
from talbench.bench.kube.rbac import Permission, allows, coordinator_permissions, permissions_from_rules
from tests.bench.kube.conftest import dispatcher_for


def used(emu, home: str | None) -> frozenset[Permission]:
    found = set()
    for r in emu.requests:
        if r.path == "/version":
            found.add(Permission("get", url="/version"))
        else:
            found.add(Permission(r.verb, r.group, r.resource, namespaced=home is not None and r.namespace == home))
    # a use in the home namespace is covered by the same verb used cluster-wide
    return frozenset(p for p in found if not (p.namespaced and Permission(p.verb, p.group, p.resource) in found))


def granted_by(docs: list[dict]) -> frozenset[Permission]:
    perms: set[Permission] = set()
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            perms |= permissions_from_rules(doc["rules"], namespaced=doc["kind"] == "Role")
    return frozenset(perms)


async def test_a_laptop_run_uses_exactly_the_runner_cluster_role(cluster, tmp_path):
    dispatcher = dispatcher_for(cluster, tmp_path)
    async with dispatcher.deploy("run-rbac") as fleet:
        for client in fleet.agents.values():
            await client.facts()
            await client.run_job("kubeprism", {"port": 1, "attempts": 1, "timeout": 0.2}, "run-rbac", deadline=20)
            await client.release_run("run-rbac")
    await dispatcher.clean()
    wanted = used(cluster, None)
    granted = granted_by(cronjob.manifests(image="talbench-test:emulated"))
    assert granted == coordinator_permissions(own_namespace=True, via_proxy=True)
    assert wanted == granted, (
        f"unused grants: {sorted(map(str, granted - wanted))}; missing: {sorted(map(str, wanted - granted))}"
    )


async def test_a_scheduled_run_uses_exactly_the_cronjob_roles(cluster, tmp_path):
    home = "talbench"
    docs = cronjob.manifests(cronjob=True, schedule="@daily", namespace=home, image="talbench-test:emulated")
    ns = next(d for d in docs if d["kind"] == "Namespace")
    cluster._put("v1", "namespaces", None, {**ns, "status": {"phase": "Active"}})
    dispatcher = dispatcher_for(cluster, tmp_path, namespace=home, access="direct")
    await dispatcher.clean()  # the CronJob's init container
    async with dispatcher.deploy("run-cron") as fleet:
        assert fleet.unready == {}
    for run in ("run-cron", "run-cron2"):
        await dispatcher.keep_summary(run, {"run_id": run, "status": "pass"}, keep=1)
    wanted = used(cluster, home)
    granted = granted_by(docs)
    assert granted == coordinator_permissions(own_namespace=False, via_proxy=False, keep_results=True)
    assert all(allows(granted, perm) for perm in wanted), sorted(map(str, wanted - granted))
    assert wanted == granted, (
        f"unused grants: {sorted(map(str, granted - wanted))}; missing: {sorted(map(str, wanted - granted))}"
    )
    kept = [c["metadata"]["name"] for c in cluster.objects("configmaps", home)]
    assert kept == ["talbench-result-run-cron2"]  # bounded history: the older one was pruned
