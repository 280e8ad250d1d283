"""KubeDispatcher against the API emulator, with real agents started by the emulated kubelet
from the DaemonSet's own container command (loopback addresses: no root needed).

A whole run through the pod proxy, and cancelling one while its agents measure, are tested
against the real control plane (tests/bench/kube/test_real_run.py; teardown that waits or cannot
finish: test_real_teardown.py), and their emulator versions are gone.  What stays here:
- cancelling while the dispatcher waits for agents: the emulator keeps one node's pod from ever
  starting, a moment the real lab kubelet (pods Ready in seconds) gives no reliable hold on;
- direct access at node IPs (in-cluster): the lab's node addresses are not routable from the
  root namespace the tests run in, by the lab's own rule;
- an unreachable API server, wrong credentials, a same-named namespace, a node tainted for
  others, an image that never pulls, an agent that crash-loops, --node-selector and Pod Security
  rejections: fast checks of the dispatcher's own messages (seconds here, no root); the real
  control plane's versions of Pod Security and credentials belong to issue 12's other parts.
"""

from __future__ import annotations

import pytest

from tests.bench.kube.conftest import dispatcher_for

pytestmark = pytest.mark.processes


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


async def test_a_pod_security_rejection_ends_the_run_with_exit_3_naming_it(tmp_path):
    from talbench.bench.errors import CouldNotRun
    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes

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
    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes

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
    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes

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

    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import free_port, loopback_nodes

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


async def test_cancelling_while_waiting_for_agents_removes_everything(tmp_path):
    import asyncio

    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes

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

    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes

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
