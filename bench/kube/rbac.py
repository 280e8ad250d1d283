"""The least RBAC the coordinator needs, per mode, as data; the Role/ClusterRole documents built
from it, and their YAML with every rule commented with why it is there.

The agents themselves get no API access at all (their ServiceAccount has no binding and mounts no
token).  What needs permissions is whoever runs the coordinator, in one of three modes:

- own namespace (a laptop, the default): the run creates ``talbench-<run id>`` and everything in
  it, so the grants are cluster-wide (a namespace that does not exist yet cannot hold a Role);
  agents are reached through the API server's pod proxy;
- ``--namespace NS`` (a laptop, an existing namespace with the privileged Pod Security labels): a
  Role in NS, and cluster-wide only the reads every run makes (nodes, pods, /version);
- CronJob (the coordinator in-cluster, as a ServiceAccount): the same in its own namespace, plus
  the ConfigMaps it keeps results in; agents are reached directly at node IPs (no pod proxy).

tests/bench/kube/test_real_rbac.py runs each mode against a real API server with an identity
bound to exactly these roles (a 403 fails it) and with one rule taken away (the run stops).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from talbench.bench.kube.manifests import LABEL_MANAGED_BY, MANAGED_BY, to_yaml

RUNNER = "talbench-runner"  # the laptop modes' ClusterRole (own namespace) or Role (--namespace)
CLUSTER_READER = "talbench-cluster-reader"  # the cluster-wide reads of the --namespace and CronJob modes


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource.  ``namespaced`` False: granted cluster-wide (ClusterRole);
    True: granted in the coordinator's own namespace only (Role).  ``resource`` may carry a
    subresource (``pods/proxy``); ``group`` "" is the core group; ``url`` is a non-resource URL."""

    verb: str
    group: str = ""
    resource: str = ""
    namespaced: bool = False
    url: str = ""

    def __str__(self) -> str:
        what = self.url or (f"{self.group}/{self.resource}" if self.group else self.resource)
        return f"{self.verb} {what}" + (" (namespace)" if self.namespaced else "")


def _cluster(verb: str, resource: str, group: str = "") -> Permission:
    return Permission(verb, group, resource, False)


def _local(verb: str, resource: str, group: str = "") -> Permission:
    return Permission(verb, group, resource, True)


# What every run reads: the API server version, the nodes, and the pods on control planes
# (topology: workloads on control planes; listed cluster-wide by spec.nodeName).
_ALWAYS = {
    Permission("get", url="/version"),
    _cluster("list", "nodes"),
    _cluster("list", "pods"),
}

# Why each verb is granted: the comment above its rule in the printed YAML.
_WHY: dict[tuple[str, str], str] = {
    ("/version", "get"): "the API server's version, recorded with the run",
    ("nodes", "list"): "where agents go: the nodes' roles, taints, readiness, addresses and capacity",
    ("pods", "list"): "the agent pods' readiness; topology: the workloads on each control plane (by spec.nodeName, "
    "all namespaces)",
    ("events", "list"): "the agent DaemonSet's FailedCreate events: a Pod Security rejection is named at once",
    ("namespaces", "create"): "the run's own namespace talbench-<run id>, with the privileged Pod Security labels",
    ("namespaces", "get"): "waiting until the run's deleted namespace is gone",
    ("namespaces", "list"): "talbench clean: the namespaces earlier runs left (by label)",
    ("namespaces", "delete"): "removing the run's namespace at its end (everything in it goes along), talbench clean",
    (
        "namespaces",
        "patch",
    ): "renewing the run's deadline on its namespace while it runs (talbench clean leaves it alone); it could "
    "relabel any namespace, Pod Security's labels included",
    ("serviceaccounts", "create"): "the agents' ServiceAccount (no role bound to it, no token mounted)",
    ("secrets", "create"): "the run's agent token and TLS certificate, mounted by the agents",
    ("daemonsets", "create"): "the agents, one pod per node: host network, NET_ADMIN, hostPort 8946",
    (
        "daemonsets",
        "patch",
    ): "renewing the run's deadline on its DaemonSet while it runs (talbench clean leaves it alone)",
    ("pods/proxy", "get"): "the agents through the API server's pod proxy: health, facts, job results",
    ("pods/proxy", "create"): "the agents through the pod proxy: starting jobs (POST)",
    ("pods/proxy", "delete"): "the agents through the pod proxy: cancelling jobs, releasing the run",
    ("configmaps", "create"): "keeping this run's summary (talbench-result-<run id>)",
    ("configmaps", "list"): "the kept summaries: the previous run to compare with, the oldest to prune",
    ("configmaps", "delete"): "pruning kept summaries beyond --keep-results",
}
_RUN_OBJECTS = (("serviceaccounts", ""), ("secrets", ""), ("daemonsets", "apps"))  # in a run's namespace
_WHY |= {
    (plural, "delete"): f"removing the run's {plural} at its end, and talbench clean" for plural, _ in _RUN_OBJECTS
}
_WHY |= {(plural, "list"): f"talbench clean: the {plural} earlier runs left (by label)" for plural, _ in _RUN_OBJECTS}


def coordinator_permissions(
    *, own_namespace: bool, via_proxy: bool, keep_results: bool = False
) -> frozenset[Permission]:
    """Exactly what the kube dispatcher (and ``clean``, and the CronJob's result keeping) uses.

    ``own_namespace``: the run creates and deletes a namespace of its own (laptop default), so its
    objects are created cluster-wide; otherwise everything lives in one existing namespace.
    ``via_proxy``: agents are reached through ``pods/proxy`` (from outside the cluster).
    ``keep_results``: results are kept as ConfigMaps in the coordinator's namespace (CronJob).
    """
    perms = set(_ALWAYS)
    grant = _cluster if own_namespace else _local
    if own_namespace:
        perms |= {_cluster(verb, "namespaces") for verb in ("create", "get", "list", "delete", "patch")}
        # the run's objects: in its namespace, which goes with everything in it
        perms |= {_cluster("create", resource, group) for resource, group in _RUN_OBJECTS}
    else:
        perms |= {
            _local(verb, resource, group) for resource, group in _RUN_OBJECTS for verb in ("create", "delete", "list")
        }
        perms.add(_local("patch", "daemonsets", "apps"))  # the run's deadline (kube.lease)
    perms.add(grant("list", "events"))
    if via_proxy:
        # the agent API through the API server: GET health/facts/jobs, POST jobs, DELETE jobs/runs
        perms |= {grant(verb, "pods/proxy") for verb in ("get", "create", "delete")}
    if keep_results:
        perms |= {_local(verb, "configmaps") for verb in ("create", "list", "delete")}
    return frozenset(perms)


def _rules(perms: Iterable[Permission]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], set[str]] = {}
    urls: dict[str, set[str]] = {}
    for perm in perms:
        if perm.url:
            urls.setdefault(perm.url, set()).add(perm.verb)
        else:
            grouped.setdefault((perm.group, perm.resource), set()).add(perm.verb)
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(grouped.items())
    ]
    rules += [{"nonResourceURLs": [url], "verbs": sorted(verbs)} for url, verbs in sorted(urls.items())]
    return rules


def permissions_from_rules(rules: Iterable[Mapping[str, Any]], *, namespaced: bool) -> frozenset[Permission]:
    """The inverse of the documents: what a Role (``namespaced``) or ClusterRole grants."""
    perms: set[Permission] = set()
    for rule in rules:
        for verb in rule["verbs"]:
            for url in rule.get("nonResourceURLs", ()):
                perms.add(Permission(verb, url=url))
            for group in rule.get("apiGroups", ()):
                for resource in rule.get("resources", ()):
                    perms.add(Permission(verb, group, resource, namespaced))
    return frozenset(perms)


def _role(
    kind: str, name: str, namespace: str | None, labels: Mapping[str, str], perms: Iterable[Permission]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {}), "labels": dict(labels)}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": _rules(perms)}


def _binding(
    kind: str,
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    role: Mapping[str, Any],
    subject: Mapping[str, str],
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {}), "labels": dict(labels)}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"]},
        "subjects": [dict(subject)],
    }


def rbac_documents(
    perms: Iterable[Permission],
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    service_account: str | None,
) -> list[dict[str, Any]]:
    """The roles holding ``perms``: with no namespaced permission (own-namespace mode) one
    ClusterRole ``name``; otherwise a Role ``name`` in ``namespace`` and the cluster-wide reads in
    the ClusterRole ``talbench-cluster-reader``.  Bound to ``service_account`` in ``namespace``
    when given (a laptop user binds them to themselves instead: see ``bind_commands``)."""
    perms = list(perms)
    cluster = [p for p in perms if not p.namespaced]
    local = [p for p in perms if p.namespaced]
    labels = {**labels, LABEL_MANAGED_BY: MANAGED_BY}
    roles = [_role("ClusterRole", CLUSTER_READER if local else name, None, labels, cluster)]
    if local:
        roles.append(_role("Role", name, namespace, labels, local))
    if not service_account:
        return roles
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    bindings = [
        # one ClusterRoleBinding per namespace: a second CronJob namespace does not take over the first's
        _binding("ClusterRoleBinding", f"{name}-{namespace}", None, labels, roles[0], subject),
        *[_binding("RoleBinding", name, namespace, labels, role, subject) for role in roles[1:]],
    ]
    return [*roles, *bindings]


def bind_commands(docs: Sequence[Mapping[str, Any]], user: str = "USER") -> list[str]:
    """How a laptop user binds the printed roles to an identity (kubectl create ...binding)."""
    lines = []
    for doc in docs:
        name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace")
        if doc["kind"] == "ClusterRole":
            lines.append(f"kubectl create clusterrolebinding {name}-{user} --clusterrole {name} --user {user}")
        elif doc["kind"] == "Role":
            lines.append(f"kubectl -n {namespace} create rolebinding {name}-{user} --role {name} --user {user}")
    return lines


def why(rule: Mapping[str, Any], *, cluster_wide: bool) -> list[str]:
    """One comment line per verb of ``rule``: why talbench asks for it."""
    targets = list(rule.get("nonResourceURLs") or ()) or list(rule.get("resources") or ())
    lines = []
    for target in targets:
        for verb in rule.get("verbs") or ():
            text = _WHY.get((target, verb), "")
            lines.append(f"{verb} {target}: {text}" if text else f"{verb} {target}")
    if cluster_wide and any(t in ("serviceaccounts", "secrets", "daemonsets") for t in targets):
        lines.append("cluster-wide: the run's namespace does not exist before the run, so no Role can hold it")
    return lines


_POWER = {
    "daemonsets": "create daemonsets: pods with host networking and NET_ADMIN on every node of a namespace whose "
    "Pod Security allows them. Whoever holds it is as good as root on the nodes: grant it only to who runs benchmarks.",
    "pods/proxy": "pods/proxy: HTTP to any pod in its scope through the API server, not only talbench's agents.",
}


def _rbac_yaml(doc: Mapping[str, Any]) -> str:
    head = {key: value for key, value in doc.items() if key != "rules"}
    text = yaml.safe_dump(head, sort_keys=False)
    resources = {r for rule in doc["rules"] for r in rule.get("resources") or ()}
    warnings = [line for key, line in _POWER.items() if key in resources]
    if doc["kind"] == "ClusterRole" and "daemonsets" in resources:
        warnings.append("Cluster-wide, this includes namespaces exempt from Pod Security (kube-system on Talos): ")
        warnings[-1] += "prefer --namespace NS and its Role on a shared cluster."
    comments = "".join(f"# {line}\n" for line in warnings)
    body = "rules:\n"
    for rule in doc["rules"]:
        body += "".join(f"# {line}\n" for line in why(rule, cluster_wide=doc["kind"] == "ClusterRole"))
        body += yaml.safe_dump([rule], sort_keys=False, default_flow_style=None)
    return comments + text + body


def commented_yaml(docs: Sequence[Mapping[str, Any]], header: Sequence[str] = ()) -> str:
    """``to_yaml(docs)`` with a comment above every Role and ClusterRole rule saying why it is
    there, the powers worth knowing, and ``header`` lines at the top; the same documents to
    ``kubectl apply``."""
    text = "".join(f"# {line}\n" for line in header)
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            text += "---\n" + _rbac_yaml(doc)
        else:
            text += to_yaml([doc])
    return text
