"""What the lab kubelet (testbed/kubelab/kubelet/main.py) is given: the API server, the lab's CA, one
client certificate per lab node (``system:node:<name>`` in ``system:nodes``, signed by the lab's
CA, so the API server's Node authorizer and NodeRestriction treat each node as a real kubelet),
and the images it "has": the archives ``lab up --kubernetes --image`` unpacked.

    prepare(lab_id, kube_dir, server, nodes, images) -> Path   (writes kubelet/kubelet.json)
    load(path) -> KubeletConfig

An image is known by its manifest digest (``...@sha256:<digest>``, whatever the registry) and
by the tags of its archive's index (``org.opencontainers.image.ref.name``) under the repository
name ``talbench`` (``REGISTRY/.../talbench:v0.1.0``), the name bench/kube/image.py tells users to
push it as; any other reference is an image the lab kubelet does not have (ErrImagePull).
"""

from __future__ import annotations

import datetime
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from talbench.bench import pki
from talbench.bench.lab.state import LabNode, write_json_atomic
from testbed.image.oci_image import REF_NAME, Image

DIRECTORY = "kubelet"  # <lab_dir>/kubernetes/kubelet: certificates, config, pods (bundles, volumes, logs)
CONFIG_FILE = "kubelet.json"
REPOSITORY = "talbench"  # bench/kube/image.py REPOSITORY: the name users push the image as
CERT_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KubeletNode:
    name: str
    namespace: str  # the node's network namespace (pods run in it)
    address: str  # InternalIP, hostIP and (all pods share the node's network) podIP
    cert: Path
    key: Path


@dataclass(frozen=True)
class KubeletImage:
    digest: str  # the manifest's: the imageID reported
    rootfs: Path
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: tuple[int, int]
    tags: tuple[str, ...]  # the archive index's ref names

    def matches(self, reference: str) -> bool:
        """Whether ``reference`` (``[host/]path[:tag][@digest]``) names this image."""
        name, _, digest = reference.partition("@")
        if digest:
            return digest == self.digest
        last = name.rsplit("/", 1)[-1]
        repository, _, tag = last.partition(":")
        return repository == REPOSITORY and tag in self.tags

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "rootfs": str(self.rootfs),
            "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
            "env": list(self.env),
            "cwd": self.cwd,
            "user": list(self.user),
            "tags": list(self.tags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KubeletImage:
        uid, gid = data["user"]
        return cls(
            digest=str(data["digest"]),
            rootfs=Path(data["rootfs"]),
            entrypoint=tuple(map(str, data["entrypoint"])),
            cmd=tuple(map(str, data["cmd"])),
            env=tuple(map(str, data["env"])),
            cwd=str(data["cwd"]),
            user=(int(uid), int(gid)),
            tags=tuple(map(str, data["tags"])),
        )


@dataclass(frozen=True)
class KubeletConfig:
    lab_id: str
    directory: Path
    server: str  # as seen from the control plane's namespace, where the kubelet runs
    api_endpoint: str  # ADDRESS:PORT of the API server from any lab node (KUBERNETES_SERVICE_HOST/PORT)
    ca: Path
    version: str  # reported as the nodes' kubeletVersion
    nodes: tuple[KubeletNode, ...]
    images: tuple[KubeletImage, ...]

    @property
    def pods_dir(self) -> Path:
        return self.directory / "pods"

    def image(self, reference: str) -> KubeletImage | None:
        return next((image for image in self.images if image.matches(reference)), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "server": self.server,
            "api_endpoint": self.api_endpoint,
            "ca": str(self.ca),
            "version": self.version,
            "nodes": [
                {"name": n.name, "namespace": n.namespace, "address": n.address, "cert": str(n.cert), "key": str(n.key)}
                for n in self.nodes
            ],
            "images": [image.to_json() for image in self.images],
        }


def load(path: Path) -> KubeletConfig:
    data = json.loads(path.read_text())
    return KubeletConfig(
        lab_id=str(data["lab_id"]),
        directory=path.parent,
        server=str(data["server"]),
        api_endpoint=str(data["api_endpoint"]),
        ca=Path(data["ca"]),
        version=str(data["version"]),
        nodes=tuple(
            KubeletNode(str(n["name"]), str(n["namespace"]), str(n["address"]), Path(n["cert"]), Path(n["key"]))
            for n in data["nodes"]
        ),
        images=tuple(KubeletImage.from_json(i) for i in data["images"]),
    )


def prepare(
    lab_id: str,
    kube_dir: Path,
    *,
    server: str,
    api_endpoint: str,
    ca: tuple[Path, Path],
    version: str,
    nodes: Sequence[LabNode],
    images: Iterable[Image],
) -> Path:
    """Write the kubelet's certificates and config under ``kube_dir/kubelet``; its path."""
    directory = kube_dir / DIRECTORY
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / "pods").mkdir(mode=0o700, exist_ok=True)
    ca_cert, ca_key = ca
    kubelet_nodes = tuple(
        KubeletNode(n.name, n.namespace, n.address, *node_certificate(directory, n.name, n.address, ca_cert, ca_key))
        for n in nodes
    )
    config = KubeletConfig(
        lab_id, directory, server, api_endpoint, ca_cert, version, kubelet_nodes, tuple(map(kubelet_image, images))
    )
    path = directory / CONFIG_FILE
    write_json_atomic(path, config.to_json(), mode=0o600)
    return path


def kubelet_image(image: Image) -> KubeletImage:
    """The unpacked ``image`` with what the kubelet also needs: the config's Cmd, the archive's tags."""
    try:
        record = json.loads((image.rootfs.parent / "image.json").read_text())
        cmd = tuple(map(str, (record.get("config") or {}).get("Cmd") or ()))
    except (OSError, ValueError):
        cmd = ()
    return KubeletImage(
        image.digest, image.rootfs, image.entrypoint, cmd, image.env, image.cwd, image.user, _tags(image.archive)
    )


def _tags(archive: Path) -> tuple[str, ...]:
    try:
        if archive.is_dir():
            index = json.loads((archive / "index.json").read_text())
        else:
            with tarfile.open(archive) as tar:
                member = tar.extractfile("index.json")
                index = json.loads(member.read()) if member else {}
    except (OSError, tarfile.TarError, ValueError, KeyError):
        return ()
    names = ((m.get("annotations") or {}).get(REF_NAME) for m in index.get("manifests") or ())
    return tuple(sorted({str(name) for name in names if name}))


def node_certificate(directory: Path, node: str, address: str, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A certificate for ``system:node:<node>`` (group ``system:nodes``) signed by the lab's CA
    (bench/pki.py): the node's client certificate, and its kubelet endpoint's serving one (for
    ``address``); (cert, key) paths, the key 0600."""
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    start = datetime.datetime.now(datetime.UTC) - pki.BACKDATE
    authority = pki.Authority(
        x509.load_pem_x509_certificate(ca_cert.read_bytes()), signer, start, start + CERT_VALIDITY
    )
    pem = authority.issue(
        f"system:node:{node}", ("system:nodes",), server=True, client=True, names=(node,), ips=(address,)
    )
    cert_path, key_path = directory / f"node-{node}.crt", directory / f"node-{node}.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(pem.key)
    cert_path.write_bytes(pem.cert)
    return cert_path, key_path
