"""The Kubernetes lab's per-lab PKI, made fresh for every lab and removed with it (the lab's
directory): one CA, the serving and client certificates of etcd, the API server and the clients
that talk to it, and the service-account signing key pair.

Keys are ECDSA P-256 (what Talos generates for its Kubernetes PKI); certificates are valid for
``VALIDITY`` from one minute before they are made.  Every private key is written 0600.

    make_pki(directory, lab_id, server_addresses) -> LabPki
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"talbench lab {lab_id}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"talbench-lab-{lab_id}-ca"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = KeyPair(directory / "ca.crt", directory / "ca.key")
    _write_pair(ca, ca_cert, ca_key)
    issuer = _Issuer(ca_cert, ca_key, now)

    loopback = ("127.0.0.1", "::1")
    addresses = tuple(dict.fromkeys((*loopback, SERVICE_IP, *server_addresses)))
    pki = LabPki(
        directory=directory,
        ca=ca,
        apiserver=issuer.issue(
            directory, "apiserver", "kube-apiserver", (), server=True, names=API_SERVER_NAMES, ips=addresses
        ),
        etcd_server=issuer.issue(
            directory, "etcd-server", "etcd", (), server=True, client=True, names=("localhost",), ips=loopback
        ),
        etcd_client=issuer.issue(directory, "apiserver-etcd-client", "kube-apiserver-etcd-client", ()),
        kubelet_client=issuer.issue(
            directory, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        ),
        admin=issuer.issue(directory, "admin", "admin", ("system:masters",)),
        controller_manager=issuer.issue(directory, "controller-manager", "system:kube-controller-manager", ()),
        scheduler=issuer.issue(directory, "scheduler", "system:kube-scheduler", ()),
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write(pki.service_account_key, _private_pem(sa_key), private=True)
    _write(
        pki.service_account_pub,
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    return pki


@dataclass(frozen=True)
class _Issuer:
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    now: datetime.datetime

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        organizations: tuple[str, ...],
        *,
        server: bool = False,
        client: bool | None = None,
        names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> KeyPair:
        """A leaf certificate: a client one (CN = user, O = groups) unless ``server``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client if client is not None else not server:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
        )
        if names or ips:
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
            alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_pair(pair, builder.sign(self.ca_key, hashes.SHA256()), key)
        return pair


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_pair(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write(pair.key, _private_pem(key), private=True)
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
