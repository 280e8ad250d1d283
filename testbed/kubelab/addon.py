"""The Kubernetes lab as an add-on of the process lab (talbench.bench.lab.addons.LabAddOn): once
the lab's agents answer, a real control plane starts on the first control plane and the lab
kubelet registers every node (testbed/kubelab/control/plane.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from talbench.bench.lab.addons import Record
from talbench.bench.lab.netns import Ip
from talbench.bench.lab.state import LabState
from testbed.image.oci_image import Image
from testbed.kubelab.control import plane
from testbed.kubelab.control.status import KubeStatus, kube_status


@dataclass(frozen=True)
class KubernetesAddOn:
    images: Sequence[Image] = ()  # what the lab kubelet runs pods from
    ready_timeout: float = plane.DEFAULT_READY_TIMEOUT
    name: str = plane.LEFTOVERS_NAME

    def up(self, ip: Ip, state: LabState, record: Record) -> None:
        plane.start(ip, state, ready_timeout=self.ready_timeout, images=self.images, record=record)

    def status(self, state: LabState) -> KubeStatus | None:
        kube = plane.load(state.lab_dir)
        return kube_status(kube) if kube else None
