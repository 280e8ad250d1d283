"""The least RBAC the coordinator needs, as data, and the Role/ClusterRole documents built from it.

The agents themselves get no API access at all (their ServiceAccount has no binding and mounts no
token).  What needs permissions is whoever runs the coordinator: a user from a laptop (per-run
namespaces, agents reached through the pod proxy) or the CronJob's ServiceAccount (one existing
namespace, agents reached directly at node IPs).  tests/bench/kube/test_rbac_used.py records
every request the dispatcher makes against the API emulator and compares it with these rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from talbench.bench.kube.manifests import LABEL_MANAGED_BY, MANAGED_BY


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
    if own_namespace:
        perms |= {
            _cluster("create", "namespaces"),
            _cluster("get", "namespaces"),  # waiting until a deleted namespace is gone
            _cluster("list", "namespaces"),  # clean: namespaces left by crashed runs
            _cluster("delete", "namespaces"),
            _cluster("create", "serviceaccounts"),
            _cluster("create", "secrets"),
            _cluster("create", "daemonsets", "apps"),
            _cluster("list", "events"),  # FailedCreate events (Pod Security rejections)
        }
    else:
        for resource, group in (("serviceaccounts", ""), ("secrets", ""), ("daemonsets", "apps")):
            perms |= {_local(verb, resource, group) for verb in ("create", "delete", "list")}
        perms.add(_local("list", "events"))
    if via_proxy:
        # the agent API through the API server: GET health/facts/jobs, POST jobs, DELETE jobs/runs
        perms |= {_cluster(verb, "pods/proxy") for verb in ("get", "create", "delete")}
    if keep_results:
        perms |= {_local(verb, "configmaps") for verb in ("create", "list", "delete")}
    return frozenset(perms)


def allows(granted: Iterable[Permission], wanted: Permission) -> bool:
    """Whether ``granted`` covers ``wanted`` (a cluster-wide grant covers every namespace)."""
    for perm in granted:
        if (perm.verb, perm.group, perm.resource, perm.url) != (wanted.verb, wanted.group, wanted.resource, wanted.url):
            continue
        if not perm.namespaced or wanted.namespaced:
            return True
    return False


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


def rbac_documents(
    perms: Iterable[Permission],
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    service_account: str | None,
) -> list[dict[str, Any]]:
    """ClusterRole (+ Role for namespaced permissions), bound to ``service_account`` in
    ``namespace`` when given (a laptop user binds the ClusterRole to themselves instead)."""
    perms = list(perms)
    cluster = [p for p in perms if not p.namespaced]
    local = [p for p in perms if p.namespaced]
    labels = {**labels, LABEL_MANAGED_BY: MANAGED_BY}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": dict(labels)},
            "rules": _rules(cluster),
        }
    ]
    if local:
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
                "rules": _rules(local),
            }
        )
    if service_account:
        subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": dict(labels)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": subject,
            }
        )
        if local:
            docs.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                    "subjects": subject,
                }
            )
    return docs
