"""Pure builders of the Kubernetes objects a run creates (plain dicts, ready to POST or print).

Every object carries the run id label, so that ``talbench clean`` can find what a crashed run
left.  Nothing here talks to the API.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import yaml

from talbench.agents import wire
from talbench.agents.main import SHUTDOWN_TIMEOUT
from talbench.agents.probes.registry import declarations
from talbench.bench.agent_tls import AgentTls

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN_ID = "talbench.io/run-id"
MANAGED_BY = "talbench"
# On everything a run creates: when the run is over at the latest (RFC 3339, UTC, the coordinator's
# clock).  ``talbench clean`` without --run-id removes a run's objects only past it, so it never
# takes away another user's run in flight (bench/kube/deploy.py).
ANNOTATION_DEADLINE = "talbench.io/deadline"
# A run's bound: agents ready (180 s), the checks (minutes; the acceptance scenario on a large
# cluster well under an hour) and removal (120 s).  The CronJob's coordinator is stopped after an
# hour (cronjob.py: activeDeadlineSeconds, then its grace period).  Past this a run's objects are
# taken for leftovers of a run that died.
RUN_DEADLINE_S = 2 * 3600

AGENT_NAME = "talbench-agent"  # app.kubernetes.io/name of the agents; stem of the run's object names
TOKEN_KEY = "token"
TLS_CERT_KEY = "tls.crt"  # the agents' serving certificate and key (bench/agent_tls.py), beside the token
TLS_KEY_KEY = "tls.key"
TOKEN_DIR = "/run/talbench"
DATA_DIR = "/var/lib/talbench"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"

PSA_LABELS = {f"pod-security.kubernetes.io/{mode}": "privileged" for mode in ("enforce", "warn", "audit")}

REFUSED_CAPABILITIES = frozenset({"SYS_MODULE", "SYS_BOOT"})  # Talos refuses pods asking for them

# The kubelet sends SIGTERM, waits this long, then SIGKILLs.  The agent's own shutdown (cancel the
# jobs, release what runs left: links, etcd members, processes) is bounded by SHUTDOWN_TIMEOUT
# (agents/main.py); the margin covers the interpreter's exit and the kubelet's own latency.  A
# SIGKILL before the agent is done would leave WireGuard test links in the node's kernel.
SHUTDOWN_MARGIN_S = 15
GRACE_PERIOD_S = math.ceil(SHUTDOWN_TIMEOUT) + SHUTDOWN_MARGIN_S

# The agent pod's memory limit: twice what the load node needs under the largest profile (xl: a
# scratch member written the whole volume, up to 8 load workers (agents/probes/etcd/generator.py)
# and the agent), so the heaviest run the scenarios allow is not OOM-killed; the member's page
# cache (WAL, db) is reclaimed under the limit.  The run it is sized from: docs/measurements.md.
MEMORY_LIMIT = "3Gi"


def tool_version() -> str:
    try:
        return metadata.version("talbench")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def run_namespace(run_id: str) -> str:
    """The namespace a run creates for itself when none is given: ``talbench-<run id>``."""
    return f"talbench-{run_id}".lower()[:63].rstrip("-")


def run_labels(run_id: str, component: str = "agent") -> dict[str, str]:
    return {
        LABEL_NAME: AGENT_NAME if component == "agent" else f"talbench-{component}",
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_RUN_ID: run_id,
    }


def agent_capabilities() -> list[str]:
    """The Linux capabilities the agents' probes declare (their ``ProbeDeclaration``), and no other;
    Talos refuses SYS_MODULE and SYS_BOOT, so no probe may ask for them."""
    wanted = sorted({cap for declaration in declarations().values() for cap in declaration.capabilities})
    refused = sorted(set(wanted) & REFUSED_CAPABILITIES)
    if refused:
        raise ValueError(f"probes declare {', '.join(refused)}, which Talos refuses to grant")
    return wanted


def deadline_text(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_time(text: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC time (``2026-11-26T07:00:00Z``); None otherwise."""
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def with_deadline(doc: Mapping[str, Any], deadline: str) -> dict[str, Any]:
    """``doc`` with the run's deadline annotation (a copy)."""
    meta = dict(doc["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_DEADLINE: deadline}
    return {**doc, "metadata": meta}


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


@dataclass(frozen=True)
class Resources:
    """The agent pod's resources, shared by the agent and everything it starts (the scratch etcd
    member, the etcd load workers, iperf3, fio).

    No CPU limit: a CFS quota would throttle the measurement itself (latency, a lower throughput
    ceiling) and the scratch member, and show up as a property of the cluster; the request keeps
    the scheduler honest.  The memory limit is sized from a measured xl etcd run (MEMORY_LIMIT).
    """

    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    memory_limit: str = MEMORY_LIMIT
    scratch_limit: str = "4Gi"  # emptyDir for fio files and etcd data

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"memory": self.memory_limit},
        }


@dataclass(frozen=True)
class AgentSpec:
    """What the run deploys.  ``namespace`` is created by the run when ``own_namespace``."""

    run_id: str
    namespace: str
    image: str
    token: str
    port: int = wire.DEFAULT_PORT
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # the nodes the run's checks need an agent on, when not every matching node (empty: all)
    node_names: tuple[str, ...] = ()
    own_namespace: bool = True
    resources: Resources = Resources()
    image_pull_policy: str = "IfNotPresent"  # kube.image.ImageRef.pull_policy for a checked reference
    image_pull_secrets: tuple[str, ...] = ()  # Secrets in ``namespace`` (private registries)
    tls: AgentTls | None = None  # the agents serve HTTPS with the run's certificate

    def __post_init__(self) -> None:
        if not wire.valid_run_id(self.run_id):  # it names the run's objects and labels them
            raise ValueError(f"not a run id: {self.run_id!r}")

    @property
    def name(self) -> str:
        """DaemonSet and ServiceAccount name: per run, so runs in one namespace never collide."""
        return f"{AGENT_NAME}-{self.run_id}".lower()[:52].rstrip("-")

    @property
    def secret_name(self) -> str:
        return f"{self.name}-token"


def image_pull_secrets(names: Sequence[str]) -> dict[str, Any]:
    """The pod spec's ``imagePullSecrets`` (nothing when there are none)."""
    return {"imagePullSecrets": [{"name": name} for name in names]} if names else {}


def namespace(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels, **PSA_LABELS}},
    }


def _meta(name: str, ns: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": ns, "labels": dict(labels)}


def service_account(spec: AgentSpec) -> dict[str, Any]:
    """The agents' identity: no API access at all (no role binding, no token mounted)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec.name, spec.namespace, run_labels(spec.run_id)),
        "automountServiceAccountToken": False,
    }


def token_secret(spec: AgentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec.secret_name, spec.namespace, run_labels(spec.run_id)),
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in _secret_files(spec).items()},
    }


def _secret_files(spec: AgentSpec) -> dict[str, bytes]:
    """The files the agents read from the run's Secret: the token, and the TLS pair if any."""
    files = {TOKEN_KEY: spec.token.encode()}
    if spec.tls is not None:
        files |= {TLS_CERT_KEY: spec.tls.cert, TLS_KEY_KEY: spec.tls.key}
    return files


def _tls_args(spec: AgentSpec) -> list[str]:
    if spec.tls is None:
        return []
    return ["--tls-cert-file", f"{TOKEN_DIR}/{TLS_CERT_KEY}", "--tls-key-file", f"{TOKEN_DIR}/{TLS_KEY_KEY}"]


def _only_on(names: tuple[str, ...]) -> dict[str, Any]:
    """A DaemonSet on just ``names`` (the nodes the run's checks need), by their metadata.name:
    one term per node (terms are ORed; the API server takes one value per node field selector)."""
    if not names:
        return {}
    terms = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]} for name in names]
    required = {"nodeSelectorTerms": terms}
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}


def agent_daemonset(spec: AgentSpec) -> dict[str, Any]:
    labels = run_labels(spec.run_id)
    selector = {LABEL_NAME: AGENT_NAME, LABEL_RUN_ID: spec.run_id}
    container = {
        "name": "agent",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "talbench.agents"],
        "args": [
            "--listen-address",
            "$(NODE_IP)",  # an IPv6 hostIP comes without brackets
            "--listen-port",
            str(spec.port),
            "--token-file",
            f"{TOKEN_DIR}/{TOKEN_KEY}",
            "--node",
            "$(NODE_NAME)",
            "--data-dir",
            DATA_DIR,
            *_tls_args(spec),
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "TALBENCH_RUN_ID", "value": spec.run_id},
        ],
        # TCP for the API, UDP for the RTT echo responder (same number, agents/wire.py)
        "ports": [
            {"name": "api", "containerPort": spec.port, "hostPort": spec.port, "protocol": "TCP"},
            {"name": "echo", "containerPort": spec.port, "hostPort": spec.port, "protocol": "UDP"},
        ],
        # a crash loop's last log lines come back in lastState.terminated.message: the run names
        # the cause without reading pod logs (bench/kube/readiness.py)
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "readinessProbe": {
            "httpGet": {
                "path": f"{wire.PREFIX}/health",
                "port": spec.port,
                "scheme": "HTTPS" if spec.tls is not None else "HTTP",
            },
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": spec.resources.as_dict(),
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            # exactly what the probes declare (WireGuard links: NET_ADMIN), with the runtime's
            # default set dropped (the lab's runc containers run the same); never SYS_MODULE/SYS_BOOT
            "capabilities": {"drop": ["ALL"], "add": agent_capabilities()},
        },
        "volumeMounts": [
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "scratch", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "wireguard-run", "mountPath": "/run/wireguard"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": GRACE_PERIOD_S,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "tolerations": [{"key": CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux", **dict(spec.node_selector)},
        **_only_on(spec.node_names),
        "containers": [container],
        **image_pull_secrets(spec.image_pull_secrets),
        "volumes": [
            {
                "name": "token",
                "secret": {
                    "secretName": spec.secret_name,
                    "defaultMode": 0o400,
                    "items": [{"key": key, "path": key} for key in _secret_files(spec)],
                },
            },
            {"name": "scratch", "emptyDir": {"sizeLimit": spec.resources.scratch_limit}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "wireguard-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(spec.name, spec.namespace, labels),
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def agent_manifests(spec: AgentSpec) -> list[dict[str, Any]]:
    """Everything one run creates, in creation order."""
    docs: list[dict[str, Any]] = []
    if spec.own_namespace:
        docs.append(namespace(spec.namespace, run_labels(spec.run_id)))
    docs += [service_account(spec), token_secret(spec), agent_daemonset(spec)]
    return docs


def to_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, as ``kubectl apply -f -`` reads it."""
    return "".join("---\n" + yaml.safe_dump(dict(doc), sort_keys=False) for doc in docs)
