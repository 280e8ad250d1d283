"""Fixtures: an emulated Talos cluster whose nodes run real agents.

``loopback_cluster`` needs no root: each node is a loopback address (127.0.0.N) and the emulated
kubelet runs the DaemonSet's real container command there.  ``lab_cluster`` (root) uses a real lab
of network namespaces, the kubelet running the agents inside the nodes' namespaces.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from talbench.bench.dispatch.kube import KubeDispatcher, KubeOptions
from talbench.bench.kube.config import load_kubeconfig
from testbed.kubesim.emulator import ApiEmulator
from testbed.kubesim.nodes import SimNode

CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def free_port(addresses: list[str]) -> int:
    """A port number free for TCP and UDP on every one of ``addresses`` (bounded tries)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def loopback_nodes(tmp: Path, control_planes: int = 3, workers: int = 1, base: int = 0) -> list[SimNode]:
    nodes = []
    for i in range(control_planes):
        nodes.append(
            SimNode(
                f"cp{i + 1}",
                f"127.0.{base + 7}.{i + 11}",
                control_plane=True,
                taints=[dict(CONTROL_PLANE_TAINT)],
                workdir=tmp / f"cp{i + 1}",
            )
        )
    for i in range(workers):
        nodes.append(
            SimNode(f"w{i + 1}", f"127.0.{base + 7}.{i + 31}", cpu="8", memory="16297000Ki", workdir=tmp / f"w{i + 1}")
        )
    return nodes


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ApiEmulator]:
    async with ApiEmulator(loopback_nodes(tmp_path)) as emu:
        yield emu


def dispatcher_for(emu: ApiEmulator, tmp: Path, **options: Any) -> KubeDispatcher:
    """A dispatcher that finds the emulator through a kubeconfig file, as a user's would."""
    kubeconfig = emu.kubeconfig(tmp / "kubeconfig")
    port = options.pop("agent_port", None) or free_port([n.address for n in emu.nodes.values()])
    defaults: dict[str, Any] = {
        "image": "talbench-test:emulated",
        "agent_port": port,
        "ready_timeout": 20.0,
        "delete_timeout": 20.0,
        "poll_interval": 0.1,
    }
    defaults.update(options)
    return KubeDispatcher(KubeOptions(**defaults), target=load_kubeconfig(str(kubeconfig)))


from tests.bench.kube.real_cluster import real_cluster  # noqa: E402, F401  (the session's real Kubernetes lab)
