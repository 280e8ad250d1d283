"""The test bed plugs into the process lab's add-on point (bench/lab/addons.py): its launcher and
add-on are what the lab expects (checked at run time here, statically by mypy)."""

from __future__ import annotations

from pathlib import Path

from talbench.bench.lab.addons import AddOnStatus, AgentLauncher, LabAddOn
from testbed.image.oci_image import Image
from testbed.image.pod import pod_context
from testbed.image.runner import ImageLauncher
from testbed.kubelab.addon import KubernetesAddOn
from testbed.kubelab.control.status import KubeStatus


def test_the_test_bed_fits_the_protocols():
    """The test bed's launcher and add-on are what the process lab expects (checked at run time
    here, statically by mypy)."""

    image = Image(Path("/x.tar"), "sha256:" + "0" * 64, Path("/rootfs"), ("/bin/talbench",), (), "/")
    assert isinstance(ImageLauncher(image, pod_context()), AgentLauncher)
    assert isinstance(KubernetesAddOn(), LabAddOn)
    assert isinstance(KubeStatus("v1", "https://x", Path("/k"), "cp1", {"etcd": "running"}), AddOnStatus)
