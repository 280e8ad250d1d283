"""The Kubernetes lab's configuration files: kubeconfigs (admin, controller manager, scheduler),
the API server's admission configuration (Pod Security as Talos configures it) and its static
token file.  Private material is written 0600."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from testbed.kubelab.control.pki import KeyPair

# Talos' default (pkg/machinery/config/generate: cluster.apiServer.admissionControl): enforce
# baseline, warn and audit restricted, kube-system exempt, latest profile versions.
POD_SECURITY_DEFAULTS: Mapping[str, str] = {
    "enforce": "baseline",
    "enforce-version": "latest",
    "audit": "restricted",
    "audit-version": "latest",
    "warn": "restricted",
    "warn-version": "latest",
}
POD_SECURITY_EXEMPT_NAMESPACES = ("kube-system",)
# A token-authenticated user bound to no role: what RBAC refuses (tests, and a user checking it).
NOBODY_USER = "talbench-lab-nobody"


def admission_config() -> dict[str, Any]:
    """The AdmissionConfiguration kube-apiserver reads (--admission-control-config-file)."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {
                "name": "PodSecurity",
                "configuration": {
                    "apiVersion": "pod-security.admission.config.k8s.io/v1",
                    "kind": "PodSecurityConfiguration",
                    "defaults": dict(POD_SECURITY_DEFAULTS),
                    "exemptions": {
                        "usernames": [],
                        "runtimeClasses": [],
                        "namespaces": list(POD_SECURITY_EXEMPT_NAMESPACES),
                    },
                },
            }
        ],
    }


def write_admission_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump(admission_config(), sort_keys=False))
    return path


def write_token_file(path: Path) -> str:
    """kube-apiserver's --token-auth-file with one token, for NOBODY_USER (no groups, no role);
    returns the token."""
    token = secrets.token_hex(24)
    _write_private(path, f"{token},{NOBODY_USER},{NOBODY_USER}\n")
    return token


def kubeconfig(server: str, ca: KeyPair, client: KeyPair, *, cluster: str, user: str) -> dict[str, Any]:
    """A kubeconfig with the CA and the client certificate embedded (it works from anywhere the
    server address is reachable)."""
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca.cert)}},
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: Mapping[str, Any]) -> Path:
    _write_private(path, yaml.safe_dump(dict(config), sort_keys=False))
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
