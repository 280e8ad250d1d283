"""The Kubernetes lab's per-lab PKI, made fresh for every lab and removed with it (the lab's
directory): one CA, the serving and client certificates of etcd, the API server and the clients
that talk to it, and the service-account signing key pair.

Keys and certificates are bench/pki.py's (ECDSA P-256), valid for ``VALIDITY`` from one minute
before they are made.  Every private key is written 0600.

    make_pki(directory, lab_id, server_addresses) -> LabPki
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from talbench.bench import pki

VALIDITY = datetime.timedelta(days=30)
SERVICE_IP = "10.96.0.1"  # the first address of the lab's service range (kube_argv.SERVICE_CIDR)
API_SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabPki:
    directory: Path
    ca: KeyPair
    apiserver: KeyPair  # kube-apiserver's serving certificate
    etcd_server: KeyPair
    etcd_client: KeyPair  # kube-apiserver -> etcd
    kubelet_client: KeyPair  # kube-apiserver -> kubelets (the pod proxy, logs, exec)
    admin: KeyPair  # CN=admin, O=system:masters: the lab's admin kubeconfig
    controller_manager: KeyPair
    scheduler: KeyPair
    service_account_key: Path  # signs service-account tokens (private)
    service_account_pub: Path  # verifies them (public)


def make_pki(directory: Path, lab_id: str, server_addresses: tuple[str, ...]) -> LabPki:
    """Create the lab's CA and certificates under ``directory`` (created 0700).  The API server's
    certificate names ``server_addresses`` (and loopback, the service IP, the usual DNS names)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority = pki.Authority.new(f"talbench lab {lab_id}", f"talbench-lab-{lab_id}-ca", VALIDITY)
    ca = KeyPair(directory / "ca.crt", directory / "ca.key")
    _write_pair(ca, authority.pem())

    def issue(stem: str, common_name: str, organizations: tuple[str, ...] = (), **kind: Any) -> KeyPair:
        pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_pair(pair, authority.issue(common_name, organizations, **kind))
        return pair

    loopback = ("127.0.0.1", "::1")
    addresses = tuple(dict.fromkeys((*loopback, SERVICE_IP, *server_addresses)))
    lab = LabPki(
        directory=directory,
        ca=ca,
        apiserver=issue("apiserver", "kube-apiserver", server=True, names=API_SERVER_NAMES, ips=addresses),
        etcd_server=issue("etcd-server", "etcd", server=True, client=True, names=("localhost",), ips=loopback),
        etcd_client=issue("apiserver-etcd-client", "kube-apiserver-etcd-client"),
        kubelet_client=issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
        admin=issue("admin", "admin", ("system:masters",)),
        controller_manager=issue("controller-manager", "system:kube-controller-manager"),
        scheduler=issue("scheduler", "system:kube-scheduler"),
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    sa_key = pki.new_key()
    _write(lab.service_account_key, pki.private_pem(sa_key), private=True)
    _write(
        lab.service_account_pub,
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return lab


def _write_pair(pair: KeyPair, pem: pki.Pem) -> None:
    _write(pair.key, pem.key, private=True)
    _write(pair.cert, pem.cert)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
