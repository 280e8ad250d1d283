"""``--target kube`` end to end over a real lab: the API emulator's kubelet runs the DaemonSet's
agent command inside every lab node's network namespace, the coordinator reaches the agents only
through the emulated pod proxy (the lab nodes' unix sockets), and the agents measure each other
over the lab network.  The verdicts match a ``--target lab`` run of the same scenario in kind, and
the emulator holds none of the run's objects afterwards.  Needs root (network namespaces)."""

from __future__ import annotations

import pytest

from talbench.bench.dispatch.lab import LabDispatcher
from talbench.bench.lab.topology import LabSpec
from testbed.kubesim.emulator import ApiEmulator
from testbed.kubesim.nodes import SimNode
from tests.bench.kube.conftest import dispatcher_for
from tests.bench.kube.runs import SCENARIO, WORKLOADS_CHECK, kinds, run_scenario
from tests.bench.lab.helpers import lab_root, skip_unless_lab_possible

pytestmark = [pytest.mark.root("ip", "sysctl"), pytest.mark.lab]


def sim_nodes(state) -> list[SimNode]:
    nodes = []
    for node in state.nodes:
        taints = []
        for taint in node.taints:
            key_value, effect = taint.rsplit(":", 1)
            key, _, value = key_value.partition("=")
            taints.append({"key": key, "effect": effect, **({"value": value} if value else {})})
        nodes.append(
            SimNode(
                node.name,
                node.address,
                control_plane=node.role.value == "control-plane",
                labels=dict(node.labels),
                taints=taints,
                workdir=node.node_dir / "kubelet",
                netns=node.namespace,
                unix_socket=node.node_dir / "kube-agent.sock",
            )
        )
    return nodes


async def test_a_kube_run_over_lab_agents_matches_a_lab_run(lab):
    port = lab.nodes[0].port + 1  # the lab's own agents keep theirs
    async with ApiEmulator(sim_nodes(lab)) as emu:
        record = await run_scenario(
            dispatcher_for(emu, lab.lab_dir, agent_port=port), SCENARIO + WORKLOADS_CHECK, run_id="kube-lab-1"
        )
        assert emu.run_objects("kube-lab-1") == []
        assert [r for r in emu.requests if r.resource == "pods/proxy"]  # agents were reached through the proxy
    assert record.target == "kube" and record.unready == {}
    kube = kinds(record)
    assert all(status == "pass" for status in kube.values()), kube
    rtt = [m for m in record.results if m.key.probe == "rtt"]
    assert len(rtt) == 6 and all(m.ok for m in rtt)

    skip_unless_lab_possible()
    with lab_root() as root:
        lab_record = await run_scenario(
            LabDispatcher(root, LabSpec(control_planes=3, workers=1)), SCENARIO, run_id="lab-1"
        )
    assert kinds(lab_record) == {key: status for key, status in kube.items() if key[0] != "control-plane-workloads"}
