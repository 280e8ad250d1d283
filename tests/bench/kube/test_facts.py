"""The cluster's facts read from the API's objects (v1 Node, Pod, /version)."""

from __future__ import annotations

import pytest

from talbench.bench.cluster_facts import ClusterFacts, talos_version
from talbench.bench.kube.facts import cluster_facts, parse_k8s_quantity
from talbench.bench.model import Role

TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"


def test_facts_from_api_objects_and_versions():
    node = {
        "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.5.0.2"}],
            "capacity": {"cpu": "3800m", "memory": "8039048Ki"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31.4", "osImage": "Talos (v1.9.1)", "kernelVersion": "6.12.6-talos"},
        },
    }
    pod = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "ownerReferences": [{"kind": "ReplicaSet", "controller": True}],
        },
        "spec": {"nodeName": "cp1"},
        "status": {"phase": "Running"},
    }
    facts = cluster_facts({"gitVersion": "v1.31.4"}, [node], [pod])
    (cp,) = facts.nodes
    assert cp.role is Role.CONTROL_PLANE and cp.address == "10.5.0.2" and cp.taints == (TAINT,)
    assert cp.cpu_cores == pytest.approx(3.8) and cp.memory_bytes == 8039048 * 1024
    assert facts.versions()["talos"] == ["v1.9.1"] and facts.versions()["kubelet"] == ["v1.31.4"]
    assert ClusterFacts.from_dict(facts.as_dict()) == facts
    assert facts.control_plane_pods[0].owner_kind == "ReplicaSet"
    assert parse_k8s_quantity("2Gi") == 2 * 2**30 and parse_k8s_quantity("bogus") is None
    assert talos_version("Ubuntu 22.04") is None
