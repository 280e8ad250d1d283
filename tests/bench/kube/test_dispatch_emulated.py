"""KubeDispatcher against the API emulator, with real agents started by the emulated kubelet
from the DaemonSet's own container command (loopback addresses: no root needed)."""

from __future__ import annotations

import pytest

from tests.bench.kube.conftest import dispatcher_for


async def test_deploy_reaches_every_agent_through_the_pod_proxy_and_removes_everything(cluster, tmp_path):
    dispatcher = dispatcher_for(cluster, tmp_path)
    async with dispatcher.deploy("run-a1") as fleet:
        assert fleet.target == "kube" and fleet.unready == {}
        assert sorted(n.name for n in fleet.nodes) == ["cp1", "cp2", "cp3", "w1"]
        for name, client in fleet.agents.items():
            assert (await client.health())["node"] == name
            assert (await client.facts())["node"] == name
        assert cluster.run_objects("run-a1")
    assert cluster.run_objects("run-a1") == []


async def test_a_whole_run_measures_agent_to_agent_and_judges_topology_from_the_api(cluster, tmp_path):
    from tests.bench.kube.runs import SCENARIO, WORKLOADS_CHECK, kinds, run_scenario

    record = await run_scenario(dispatcher_for(cluster, tmp_path), SCENARIO + WORKLOADS_CHECK, run_id="run-e2e")
    got = kinds(record)
    assert record.target == "kube" and record.unready == {}
    pairs = [("control-plane-rtt", p) for p in ("cp1-cp2", "cp1-cp3", "cp2-cp3")]
    assert all(got[p] == "pass" for p in pairs), got
    for name in ("control-plane-count", "control-plane-quorum", "control-plane-count-odd"):
        assert got[(name, "cluster")] == "pass"
    for cp in ("cp1", "cp2", "cp3"):
        assert got[("control-plane-tainted", cp)] == "pass"
        assert got[("control-plane-workloads", cp)] == "pass"
    # agent to agent: the rtt samples were measured between node addresses, not via the proxy
    rtt = [m for m in record.results if m.key.probe == "rtt"]
    assert rtt and all(m.ok and len(m.data["samples_ns"]) >= 30 for m in rtt)
    assert record.metadata["versions"]["talos"] == ["v1.9.1"]
    assert record.metadata["kube"]["agent_access"] == "pod-proxy"
    assert cluster.run_objects("run-e2e") == []


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


async def test_a_pod_security_rejection_ends_the_run_with_exit_3_naming_it(tmp_path):
    from talbench.bench.errors import CouldNotRun
    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    # an admission policy that ignores the namespace's privileged label (Talos default: baseline)
    async with ApiEmulator(loopback_nodes(tmp_path), forced_pod_security="baseline") as emu:
        with pytest.raises(CouldNotRun) as caught:
            async with dispatcher_for(emu, tmp_path).deploy("run-psa"):
                pytest.fail("deployed despite Pod Security")
        assert caught.value.exit_code == 3
        message = _one_line(caught.value)
        assert "rejected by Pod Security admission" in message and "hostNetwork" in message
        assert emu.run_objects("run-psa") == []


async def test_an_existing_namespace_without_the_privileged_label_is_rejected_too(tmp_path):
    from talbench.bench.errors import CouldNotRun
    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    async with ApiEmulator(loopback_nodes(tmp_path)) as emu:
        emu._put("v1", "namespaces", None, {"metadata": {"name": "plain"}, "status": {"phase": "Active"}})
        with pytest.raises(CouldNotRun, match='violates PodSecurity "baseline:latest"'):
            async with dispatcher_for(emu, tmp_path, namespace="plain").deploy("run-plain"):
                pytest.fail("deployed despite Pod Security")
        assert emu.run_objects("run-plain") == []
        assert emu.store.get(("v1", "namespaces", None, "plain")) is not None  # not ours: left alone


async def test_an_unreachable_api_server_is_one_line_and_exit_3(tmp_path):
    from talbench.bench.dispatch.kube import KubeDispatcher, KubeOptions
    from talbench.bench.errors import CouldNotRun
    from tests.bench.kube.conftest import free_port

    port = free_port(["127.0.0.1"])  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: c, user: u}}]\n"
    )
    dispatcher = KubeDispatcher(KubeOptions(kubeconfig=str(kubeconfig), image="talbench:v0", request_timeout=3))
    with pytest.raises(CouldNotRun) as caught:
        async with dispatcher.deploy("run-unreachable"):
            pytest.fail("deployed without an API server")
    assert caught.value.exit_code == 3
    assert _one_line(caught.value).startswith(
        f"cannot reach the Kubernetes API server at https://127.0.0.1:{port} (context gone)"
    )


async def test_a_node_whose_agent_never_comes_gets_the_reason_and_the_rest_runs(tmp_path):
    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    nodes = loopback_nodes(tmp_path)
    nodes[-1].failure = "ImagePullBackOff"
    async with ApiEmulator(nodes) as emu:
        async with dispatcher_for(emu, tmp_path).deploy("run-pull") as fleet:
            assert set(fleet.agents) == {"cp1", "cp2", "cp3"}
            assert "ImagePullBackOff" in fleet.unready["w1"]
            assert [n.name for n in fleet.nodes] == ["cp1", "cp2", "cp3", "w1"]
        assert emu.run_objects("run-pull") == []


async def test_a_crash_looping_agent_is_reported_with_its_exit_code(tmp_path):
    import socket

    from tests.bench.kube.conftest import free_port, loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    nodes = loopback_nodes(tmp_path, control_planes=1, workers=1)
    port = free_port([n.address for n in nodes])
    with socket.socket() as squatter:  # the agent port is taken on w1: its agent exits
        squatter.bind((nodes[1].address, port))
        squatter.listen()
        async with ApiEmulator(nodes) as emu:
            async with dispatcher_for(emu, tmp_path, agent_port=port).deploy("run-crash") as fleet:
                assert set(fleet.agents) == {"cp1"}
                assert "CrashLoopBackOff" in fleet.unready["w1"] and "exit code 3" in fleet.unready["w1"]
            assert emu.run_objects("run-crash") == []


async def test_cancelling_a_run_removes_everything_and_stops_the_agents(cluster, tmp_path):
    import asyncio

    inside = asyncio.Event()

    async def run() -> None:
        async with dispatcher_for(cluster, tmp_path).deploy("run-cancel"):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    await asyncio.wait_for(inside.wait(), 30)
    containers = list(cluster._containers.values())
    assert cluster.run_objects("run-cancel") and len(containers) == 4
    assert all(c.proc.returncode is None for c in containers)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cluster.run_objects("run-cancel") == []
    for _ in range(100):  # the kubelet notices the pods are gone and stops the agents
        if all(c.proc.returncode is not None for c in containers):
            break
        await asyncio.sleep(0.1)
    assert all(c.proc.returncode is not None for c in containers)


async def test_cancelling_while_waiting_for_agents_removes_everything(tmp_path):
    import asyncio

    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    nodes = loopback_nodes(tmp_path)
    nodes[0].workdir = None  # cp1 never gets a container: the run waits
    async with ApiEmulator(nodes) as emu:
        task = asyncio.create_task(dispatcher_for(emu, tmp_path, ready_timeout=60).deploy("run-wait").__aenter__())
        for _ in range(100):
            if emu.run_objects("run-wait"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert emu.run_objects("run-wait") == []


async def test_in_cluster_access_reaches_agents_directly_at_node_ips(cluster, tmp_path):
    async with dispatcher_for(cluster, tmp_path, access="direct").deploy("run-direct") as fleet:
        assert fleet.unready == {} and fleet.metadata["kube"]["agent_access"] == "direct"
        for name, client in fleet.agents.items():
            assert (await client.facts())["node"] == name
    assert not [r for r in cluster.requests if r.resource == "pods/proxy"]


async def test_node_selector_limits_the_nodes(cluster, tmp_path):
    selector = {"node-role.kubernetes.io/control-plane": ""}
    async with dispatcher_for(cluster, tmp_path, node_selector=selector).deploy("run-sel") as fleet:
        assert sorted(fleet.agents) == ["cp1", "cp2", "cp3"] and fleet.unready == {}
        assert len(fleet.metadata["kubernetes"]["nodes"]) == 4  # topology still sees the whole cluster


async def test_a_namespace_that_already_exists_is_never_deleted(cluster, tmp_path):
    from talbench.bench.errors import CouldNotRun

    cluster._put("v1", "namespaces", None, {"metadata": {"name": "talbench-run-dup"}, "status": {"phase": "Active"}})
    with pytest.raises(CouldNotRun, match="already exists"):
        async with dispatcher_for(cluster, tmp_path).deploy("run-dup"):
            pytest.fail("deployed into someone else's namespace")
    assert cluster.store.get(("v1", "namespaces", None, "talbench-run-dup")) is not None


async def test_nodes_no_agent_can_reach_are_reported_without_waiting(tmp_path):
    import time

    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.emulator import ApiEmulator

    nodes = loopback_nodes(tmp_path)
    nodes[-1].taints = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    async with ApiEmulator(nodes) as emu:
        started = time.monotonic()
        async with dispatcher_for(emu, tmp_path, ready_timeout=60).deploy("run-taint") as fleet:
            assert time.monotonic() - started < 30
            assert fleet.unready == {"w1": "taint dedicated=gpu:NoSchedule keeps the agent DaemonSet off this node"}


async def test_wrong_credentials_are_a_clear_permission_error(cluster, tmp_path):
    from talbench.bench.errors import NoPermission

    dispatcher = dispatcher_for(cluster, tmp_path)
    cluster.token = "rotated"
    with pytest.raises(NoPermission, match=r"refused the credentials \(401 Unauthorized\)") as caught:
        async with dispatcher.deploy("run-401"):
            pytest.fail("deployed with a wrong token")
    assert caught.value.exit_code == 3
