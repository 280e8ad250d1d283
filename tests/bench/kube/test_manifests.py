"""Every document talbench generates validates against current Kubernetes schemas (offline,
kubernetes-validate, strict: unknown fields are errors), and the pods meet the Pod Security
profile they are meant for."""

from __future__ import annotations

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from talbench.bench.errors import UsageError  # noqa: E402
from talbench.bench.kube import cronjob  # noqa: E402
from talbench.bench.kube import manifests as m  # noqa: E402
from tests.bench.kube import psa  # noqa: E402

VERSIONS = ["1.33.0", kubernetes_validate.utils.latest_version()]


def all_documents() -> list[dict]:
    spec = m.AgentSpec(
        run_id="20261121-153000-a1b2",
        namespace="talbench-20261121-153000-a1b2",
        image="example/talbench:v1",
        token="tok",
        node_selector={"node.kubernetes.io/instance-type": "m5.large"},
    )
    existing = m.AgentSpec(
        run_id="r2", namespace="talbench", image="example/talbench:v1", token="tok", own_namespace=False
    )
    return [
        *m.agent_manifests(spec),
        *m.agent_manifests(existing),
        *cronjob.manifests(),
        *cronjob.manifests(cronjob=True, schedule="0 3 * * *", pushgateway="http://pushgateway.monitoring:9091"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_generated_document_validates_strictly(version):
    docs = all_documents()
    kinds = {doc["kind"] for doc in docs}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "DaemonSet",
        "ClusterRole",
        "Role",
        "ClusterRoleBinding",
        "RoleBinding",
        "CronJob",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_document_does_fail_validation():
    daemonset = m.agent_daemonset(m.AgentSpec(run_id="r", namespace="n", image="i", token="t"))
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


def test_the_printed_yaml_is_the_same_documents():
    docs = cronjob.manifests(cronjob=True, schedule="@daily")
    assert list(yaml.safe_load_all(m.to_yaml(docs))) == docs


def test_the_agent_daemonset_is_what_talos_accepts_and_labelled_with_the_run():
    spec = m.AgentSpec(run_id="run-7", namespace="ns", image="img:1", token="t", port=8946)
    docs = m.agent_manifests(spec)
    assert all(doc["metadata"]["labels"][m.LABEL_RUN_ID] == "run-7" for doc in docs)
    ns = docs[0]
    assert {ns["metadata"]["labels"][f"pod-security.kubernetes.io/{k}"] for k in ("enforce", "warn", "audit")} == {
        "privileged"
    }
    pod = docs[-1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"key": m.CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    caps = container["securityContext"]["capabilities"]["add"]
    assert "NET_ADMIN" in caps and container["securityContext"]["privileged"] is False  # WireGuard's links
    assert caps == m.agent_capabilities()  # exactly what the probes declare
    assert not {"SYS_MODULE", "SYS_BOOT"} & set(caps)
    assert {p["containerPort"] for p in container["ports"]} == {8946}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/health", "port": 8946}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert any("emptyDir" in v for v in pod["volumes"]) and not any("hostPath" in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False
    # Talos' default (baseline) would reject it: that is why the namespace is privileged
    assert psa.violations("baseline", pod) and psa.violations("privileged", pod) == []


def test_the_coordinator_pod_meets_the_restricted_profile():
    docs = cronjob.manifests(cronjob=True, schedule="*/30 * * * *")
    job = next(d for d in docs if d["kind"] == "CronJob")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert psa.violations("restricted", pod) == []
    broken = {**pod, "securityContext": {}}
    assert psa.violations("restricted", broken)  # the check is not vacuous
    assert job["spec"]["concurrencyPolicy"] == "Forbid" and job["spec"]["schedule"] == "*/30 * * * *"


def test_the_default_image_follows_the_tool_version():
    assert m.default_image().endswith(f":v{m.tool_version()}")


@pytest.mark.parametrize("schedule", ["", "every day", "0 3 * *", "0 3 * * * *", "@sometimes"])
def test_a_bad_schedule_is_a_usage_error(schedule):
    with pytest.raises(UsageError, match="--schedule"):
        cronjob.manifests(cronjob=True, schedule=schedule)


def test_cronjob_needs_a_schedule_and_schedule_needs_cronjob():
    with pytest.raises(UsageError, match="--cronjob needs --schedule"):
        cronjob.manifests(cronjob=True)
    with pytest.raises(UsageError, match="only goes with --cronjob"):
        cronjob.manifests(schedule="@daily")
