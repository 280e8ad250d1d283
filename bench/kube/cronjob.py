"""CronJob mode and ``talbench manifests``: the documents a user applies, and the results a
scheduled run keeps in the cluster (one ConfigMap per run, bounded history, readable with
``kubectl -n talbench get configmap -l app.kubernetes.io/component=result``).

The CronJob runs the coordinator inside the cluster, in one existing namespace (``talbench``,
privileged Pod Security labels for the agents' DaemonSet), as a ServiceAccount holding exactly the
permissions of ``rbac.coordinator_permissions(own_namespace=False, via_proxy=False,
keep_results=True)``; the coordinator's own pod meets the ``restricted`` profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from talbench.bench.agent_tls import AgentTls
from talbench.bench.errors import UsageError
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeApiError, KubeClient, path
from talbench.bench.kube.image import ImageRef, parse_pull_secrets, require_image
from talbench.bench.kube.rbac import bind_commands, coordinator_permissions, rbac_documents
from talbench.bench.report.dashboard import DASHBOARD_FILE, SIDECAR_LABEL, dashboard
from talbench.bench.report.history import Kept

DEFAULT_NAMESPACE = "talbench"
COORDINATOR = "talbench-coordinator"
RUNNER_ROLE = "talbench-runner"  # what a laptop user needs (bind it to yourself)
RESULT_COMPONENT = "result"
RESULT_KEY = "summary.json"
LABEL_SCENARIO = "talbench.io/scenario"  # on a kept result, when the scenario's name is a label value
DEFAULT_KEEP = 10
CONFIGMAP_LIMIT = 1_000_000  # bytes; the API server refuses ConfigMaps over 1 MiB

_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def check_schedule(schedule: str) -> str:
    """A CronJob schedule: five cron fields or a macro (``@daily``); UsageError otherwise."""
    text = " ".join(str(schedule or "").split())
    if text in _CRON_MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise UsageError(
            f"--schedule {schedule!r}: expected five cron fields (e.g. '0 3 * * *') or a macro like @daily"
        )
    return text


def _labels(component: str) -> dict[str, str]:
    return {m.LABEL_NAME: "talbench", m.LABEL_COMPONENT: component, m.LABEL_MANAGED_BY: m.MANAGED_BY}


# The coordinator's removal of the run's objects on SIGTERM (activeDeadlineSeconds, a deleted Job)
# waits for the namespace's pods, whose own grace period is manifests.GRACE_PERIOD_S, and is bounded
# by the dispatcher's delete timeout (120 s): the coordinator gets that long, and a margin.
COORDINATOR_GRACE_S = 150


def coordinator_pod_spec(
    args: Sequence[str], image: ImageRef, namespace: str, pull_secrets: Sequence[str] = ()
) -> dict[str, Any]:
    """The coordinator's pod: restricted Pod Security profile, read-only root, scratch in /tmp."""
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    common = {
        "image": str(image),
        "imagePullPolicy": image.pull_policy,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "securityContext": security,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    }
    return {
        "serviceAccountName": COORDINATOR,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": COORDINATOR_GRACE_S,
        **m.image_pull_secrets(pull_secrets),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # what earlier runs left in the namespace past their deadline goes first (a run in flight,
        # say a user's with --namespace, stays: deploy.clean)
        "initContainers": [
            {"name": "clean", "command": ["talbench"], "args": ["clean", "--namespace", namespace], **common}
        ],
        "containers": [{"name": "coordinator", "command": ["talbench"], "args": list(args), **common}],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}],
    }


def coordinator_manifests(
    *,
    schedule: str,
    image: ImageRef,
    namespace: str = DEFAULT_NAMESPACE,
    scenario: str = "acceptance",
    keep: int = DEFAULT_KEEP,
    pushgateway: str | None = None,
    cluster: str | None = None,
    run_timeout: int = 3600,
    pull_secrets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, least RBAC and the CronJob running ``talbench run`` in-cluster;
    with ``pushgateway``, the Grafana dashboard of the pushed metrics as a ConfigMap.
    ``pull_secrets`` must exist in ``namespace``: the coordinator's pod and the agents use them."""
    schedule = check_schedule(schedule)
    if not 1 <= keep <= 100:
        raise UsageError(f"--keep-results {keep}: from 1 to 100")
    perms = coordinator_permissions(own_namespace=False, via_proxy=False, keep_results=True)
    args = [
        "run",
        "--scenario",
        scenario,
        "--target",
        "kube",
        "--namespace",
        namespace,
        "--image",
        str(image),
        *(arg for name in pull_secrets for arg in ("--image-pull-secret", name)),
        "--format",
        "json",
        "--out",
        "/tmp/talbench",
        "--keep-results",
        str(keep),
    ]
    if pushgateway:
        args += ["--pushgateway", pushgateway, *(["--cluster", cluster] if cluster else [])]
    labels = _labels("coordinator")
    return [
        m.namespace(namespace, _labels("namespace")),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": COORDINATOR, "namespace": namespace, "labels": labels},
        },
        *rbac_documents(perms, name=COORDINATOR, namespace=namespace, labels=labels, service_account=COORDINATOR),
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "talbench", "namespace": namespace, "labels": labels},
            "spec": {
                "schedule": schedule,
                "concurrencyPolicy": "Forbid",  # two runs would measure each other
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 0,  # a failed gate is a result, not something to retry
                        "activeDeadlineSeconds": run_timeout,
                        "ttlSecondsAfterFinished": 7 * 24 * 3600,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": coordinator_pod_spec(args, image, namespace, pull_secrets),
                        },
                    },
                },
            },
        },
        *([dashboard_configmap(namespace)] if pushgateway else []),
    ]


def dashboard_configmap(namespace: str) -> dict[str, Any]:
    """The Grafana dashboard (bench/report/dashboard.py) where Grafana's sidecar finds it: a
    ConfigMap labelled ``grafana_dashboard: "1"`` (the sidecar must watch this namespace)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "talbench-grafana-dashboard",
            "namespace": namespace,
            "labels": {**_labels("dashboard"), SIDECAR_LABEL: "1"},
        },
        "data": {DASHBOARD_FILE: json.dumps(dashboard(), separators=(",", ":"))},
    }


def runner_roles(namespace: str | None = None) -> list[dict[str, Any]]:
    """The roles a laptop user needs: own-namespace mode (``namespace`` None) one ClusterRole;
    ``--namespace NS`` a Role in NS and the cluster-wide reads (bind them to yourself:
    ``rbac.bind_commands``)."""
    perms = coordinator_permissions(own_namespace=namespace is None, via_proxy=True)
    return rbac_documents(
        perms, name=RUNNER_ROLE, namespace=namespace or "", labels=_labels("runner"), service_account=None
    )


def runner_manifests(
    *, image: ImageRef, run_id: str = "example", namespace: str | None = None, pull_secrets: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """What one laptop run creates (an example run id, the token and the agents' certificate shown
    as placeholders), in its own namespace or (``namespace``) an existing one, and the roles a
    user needs to run it."""
    placeholder = b"generated-per-run"
    spec = m.AgentSpec(
        run_id=run_id,
        namespace=namespace or m.run_namespace(run_id),
        image=str(image),
        token="generated-per-run",
        own_namespace=namespace is None,
        image_pull_policy=image.pull_policy,
        image_pull_secrets=tuple(pull_secrets),
        tls=AgentTls(ca_cert=b"", cert=placeholder, key=placeholder),
    )
    return [*m.agent_manifests(spec), *runner_roles(namespace)]


def manifests(
    *,
    cronjob: bool = False,
    schedule: str | None = None,
    image: str | None = None,
    namespace: str | None = None,
    scenario: str = "acceptance",
    keep: int = DEFAULT_KEEP,
    pushgateway: str | None = None,
    cluster: str | None = None,
    pull_secrets: str | Sequence[str] | None = None,
    rbac_only: bool = False,
) -> list[dict[str, Any]]:
    """``talbench manifests [--cronjob --schedule CRON] [--namespace NS] --image REF
    [--image-pull-secret NAME]``: the documents, in apply order.  The image is required
    (UsageError with how to build one), except for ``--rbac`` (``rbac_only``): the roles of the
    laptop mode alone, own namespace or ``--namespace NS``."""
    if cronjob and not schedule:
        raise UsageError("--cronjob needs --schedule CRON (e.g. '0 3 * * *')")
    if schedule and not cronjob:
        raise UsageError("--schedule only goes with --cronjob")
    if rbac_only:
        if cronjob:
            raise UsageError("--rbac prints the roles of a laptop run; --cronjob prints its own with the CronJob")
        return runner_roles(namespace)
    ref = require_image(image, m.tool_version())
    secrets = parse_pull_secrets(pull_secrets)
    if cronjob:
        assert schedule is not None
        return coordinator_manifests(
            schedule=schedule,
            image=ref,
            namespace=namespace or DEFAULT_NAMESPACE,
            scenario=scenario,
            keep=keep,
            pushgateway=pushgateway,
            cluster=cluster,
            pull_secrets=secrets,
        )
    return runner_manifests(image=ref, namespace=namespace, pull_secrets=secrets)


def header(docs: Sequence[Mapping[str, Any]], *, cronjob: bool) -> list[str]:
    """The comment lines on top of ``talbench manifests``' output: what it is, how to bind."""
    if cronjob:
        return [
            "talbench CronJob mode: the coordinator runs in-cluster as ServiceAccount talbench-coordinator,",
            "bound below to exactly what a scheduled run uses.  kubectl apply -f this file.",
        ]
    lines = ["The roles a user needs to run talbench (review them; rules say why), bound to yourself with:"]
    lines += [f"  {command}" for command in bind_commands(docs)]
    if any(doc["kind"] == "DaemonSet" for doc in docs):
        lines.append("The other documents are what one run creates (example run id): for review, not to apply.")
    return lines


# ---- results kept in the cluster ---------------------------------------------------------------


def result_name(run_id: str) -> str:
    return f"talbench-result-{run_id}".lower()[:253]


def _compact(summary: Mapping[str, Any]) -> str:
    text = json.dumps(summary, sort_keys=True, default=str)
    if len(text.encode()) <= CONFIGMAP_LIMIT:
        return text
    keys = ("schema", "run_id", "scenario", "status", "exit_code", "counts", "compared_with", "comparison")
    brief = {k: summary[k] for k in keys if k in summary}
    brief["truncated"] = "the full summary is larger than a ConfigMap holds; see the job's log"
    return json.dumps(brief, sort_keys=True, default=str)


def _scenario_label(summary: Mapping[str, Any]) -> dict[str, str]:
    scenario = summary.get("scenario")
    return {LABEL_SCENARIO: scenario} if isinstance(scenario, str) and _LABEL_VALUE.match(scenario) else {}


def _oldest_first(found: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        found,
        key=lambda c: (
            str(c["metadata"].get("creationTimestamp", "")),
            c["metadata"].get("labels", {}).get(m.LABEL_RUN_ID, ""),
        ),
    )


async def kept_summaries(kube: KubeClient, namespace: str) -> tuple[Kept, ...]:
    """The summaries kept in ``namespace``, newest first (what bench/report/history.py compares a
    run with); read as they are, damaged or not."""
    selector = m.label_selector(_labels(RESULT_COMPONENT))
    found = await kube.list(path("v1", "configmaps", namespace), label_selector=selector)
    kept = []
    for item in reversed(_oldest_first(found)):
        meta, data = item["metadata"], item.get("data")
        labels = meta.get("labels") or {}
        text = data.get(RESULT_KEY) if isinstance(data, Mapping) else None
        kept.append(
            Kept(
                name=str(meta.get("name", "")),
                run_id=str(labels.get(m.LABEL_RUN_ID, "")),
                scenario=labels.get(LABEL_SCENARIO),
                text=text if isinstance(text, str) else None,
            )
        )
    return tuple(kept)


async def keep_summary(
    kube: KubeClient, namespace: str, run_id: str, summary: Mapping[str, Any], *, keep: int = DEFAULT_KEEP
) -> list[str]:
    """Store ``summary`` as ConfigMap ``talbench-result-<run id>`` and delete the oldest beyond
    ``keep``.  Returns the names deleted."""
    labels = {**_labels(RESULT_COMPONENT), m.LABEL_RUN_ID: run_id, **_scenario_label(summary)}
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": result_name(run_id), "namespace": namespace, "labels": labels},
        "data": {RESULT_KEY: _compact(summary)},
    }
    await kube.create(path("v1", "configmaps", namespace), body)
    selector = m.label_selector(_labels(RESULT_COMPONENT))
    ordered = _oldest_first(await kube.list(path("v1", "configmaps", namespace), label_selector=selector))
    deleted = []
    for old in ordered[: max(0, len(ordered) - keep)]:
        name = old["metadata"]["name"]
        try:
            await kube.delete(path("v1", "configmaps", namespace, name))
        except KubeApiError:
            continue  # another run pruned it first
        deleted.append(name)
    return deleted
