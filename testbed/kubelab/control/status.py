"""How the Kubernetes lab's control plane is (``talbench lab status``): where its admin
kubeconfig is, the server address it names, and whether each component still runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from testbed.kubelab.control.plane import KubeLab, component_status


@dataclass(frozen=True)
class KubeStatus:
    version: str
    server: str
    kubeconfig: Path
    node: str
    components: Mapping[str, str]  # component -> "running" | why not

    @property
    def healthy(self) -> bool:
        return all(state == "running" for state in self.components.values())

    def lines(self) -> list[str]:
        parts = ", ".join(f"{name} {state}" for name, state in self.components.items())
        return [
            f"  kubernetes {self.version} on {self.node}: {parts}",
            f"  kubeconfig: {self.kubeconfig} (server {self.server}, a loopback forwarder into the lab)",
        ]


def kube_status(kube: KubeLab) -> KubeStatus:
    return KubeStatus(kube.version, kube.server, kube.kubeconfig, kube.node, component_status(kube))
