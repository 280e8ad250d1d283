"""Every document talbench generates validates against current Kubernetes schemas (offline,
kubernetes-validate, strict: unknown fields are errors); the roles printed per mode are what the
code declares.  Pod Security and RBAC themselves meet a real API server in test_real_rbac.py."""

from __future__ import annotations

import base64

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from talbench.bench.agent_tls import make_agent_tls  # noqa: E402
from talbench.bench.errors import UsageError  # noqa: E402
from talbench.bench.kube import cronjob, rbac  # noqa: E402
from talbench.bench.kube import manifests as m  # noqa: E402

VERSIONS = ["1.33.0", kubernetes_validate.utils.latest_version()]
DIGEST = "registry.example:5000/talbench@sha256:" + "ab" * 32


def all_documents() -> list[dict]:
    spec = m.AgentSpec(
        run_id="20261121-153000-a1b2",
        namespace="talbench-20261121-153000-a1b2",
        image="example/talbench:v1",
        token="tok",
        node_selector={"node.kubernetes.io/instance-type": "m5.large"},
        image_pull_secrets=("regcred",),
    )
    existing = m.AgentSpec(
        run_id="r2",
        namespace="talbench",
        image="example/talbench:v1",
        token="tok",
        own_namespace=False,
        node_names=("cp1", "cp2", "cp3"),  # a run whose checks need agents on the control planes only
    )
    return [
        *m.agent_manifests(spec),
        *m.agent_manifests(existing),
        *cronjob.manifests(image=DIGEST),
        *cronjob.manifests(image=DIGEST, namespace="bench", pull_secrets=["regcred"]),
        *cronjob.manifests(
            cronjob=True,
            schedule="0 3 * * *",
            image=DIGEST,
            pull_secrets=["regcred"],
            pushgateway="http://pushgateway.monitoring:9091",
        ),
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


def test_a_run_that_needs_some_nodes_only_puts_its_daemonset_on_them_by_name():
    spec = m.AgentSpec(run_id="r", namespace="n", image="i", token="t", node_names=("cp1", "cp2"))
    pod = m.agent_daemonset(spec)["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [  # one term per node: the API server takes one value per node field selector
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]} for name in ("cp1", "cp2")
    ]
    every = m.agent_daemonset(m.AgentSpec(run_id="r", namespace="n", image="i", token="t"))["spec"]["template"]
    assert "affinity" not in every["spec"]


def test_a_broken_document_does_fail_validation():
    daemonset = m.agent_daemonset(m.AgentSpec(run_id="r", namespace="n", image="i", token="t"))
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    "options",
    [
        {"cronjob": True, "schedule": "@daily", "image": DIGEST},
        {"image": DIGEST},
        {"image": DIGEST, "namespace": "bench"},
        {"rbac_only": True},
        {"rbac_only": True, "namespace": "bench"},
    ],
)
def test_the_printed_yaml_is_the_same_documents_with_every_rule_commented(options):
    docs = cronjob.manifests(**options)
    text = rbac.commented_yaml(docs, cronjob.header(docs, cronjob=bool(options.get("cronjob"))))
    assert list(yaml.safe_load_all(text)) == docs
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith(("- apiGroups:", "- nonResourceURLs:"))]
    assert rules and all(lines[i - 1].startswith("# ") for i in rules)  # each rule says why
    if not options.get("cronjob"):  # a laptop user is told how to bind the roles to themselves
        assert "# kubectl create clusterrolebinding" in text.replace("#   ", "# ")


def _granted(docs: list[dict]) -> frozenset:
    return frozenset().union(
        *(
            rbac.permissions_from_rules(d["rules"], namespaced=d["kind"] == "Role")
            for d in docs
            if d["kind"] in ("Role", "ClusterRole")
        )
    )


def test_each_mode_prints_the_roles_the_code_declares():
    own = cronjob.manifests(rbac_only=True)
    assert [d["kind"] for d in own] == ["ClusterRole"]
    assert _granted(own) == rbac.coordinator_permissions(own_namespace=True, via_proxy=True)
    existing = cronjob.manifests(rbac_only=True, namespace="bench")
    assert [(d["kind"], d["metadata"].get("namespace")) for d in existing] == [("ClusterRole", None), ("Role", "bench")]
    assert _granted(existing) == rbac.coordinator_permissions(own_namespace=False, via_proxy=True)
    # cluster-wide, the --namespace mode only reads
    assert {p.verb for p in _granted(existing) if not p.namespaced} == {"get", "list"}
    scheduled = cronjob.manifests(cronjob=True, schedule="@daily", image=DIGEST, namespace="bench")
    assert _granted(scheduled) == rbac.coordinator_permissions(own_namespace=False, via_proxy=False, keep_results=True)
    assert not any(p.resource == "pods/proxy" for p in _granted(scheduled))  # in-cluster: agents at node IPs
    bindings = [d for d in scheduled if d["kind"].endswith("Binding")]
    assert {b["subjects"][0]["name"] for b in bindings} == {cronjob.COORDINATOR}
    assert {b["metadata"]["name"] for b in bindings if b["kind"] == "ClusterRoleBinding"} == {
        "talbench-coordinator-bench"
    }


def test_the_roles_need_no_image_and_the_cronjob_prints_its_own():
    assert cronjob.manifests(rbac_only=True)
    with pytest.raises(UsageError, match="--rbac"):
        cronjob.manifests(rbac_only=True, cronjob=True, schedule="@daily")


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
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]  # and none of the runtime's defaults
    assert not {"SYS_MODULE", "SYS_BOOT"} & set(caps)
    assert {p["containerPort"] for p in container["ports"]} == {8946}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/health", "port": 8946, "scheme": "HTTP"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["imagePullPolicy"] == "IfNotPresent" and "imagePullSecrets" not in pod
    assert any("emptyDir" in v for v in pod["volumes"]) and not any("hostPath" in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False


def test_with_the_runs_tls_the_agents_serve_https_from_the_secret_beside_the_token():
    tls = make_agent_tls("run-8")
    spec = m.AgentSpec(run_id="run-8", namespace="ns", image="img:1", token="t0k", tls=tls)
    secret, daemonset = m.agent_manifests(spec)[-2:]
    files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert files == {m.TOKEN_KEY: b"t0k", m.TLS_CERT_KEY: tls.cert, m.TLS_KEY_KEY: tls.key}
    pod = daemonset["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    mounted = next(v for v in pod["volumes"] if v["name"] == "token")["secret"]
    assert {item["path"] for item in mounted["items"]} == set(files)
    cert = args[args.index("--tls-cert-file") + 1]
    key = args[args.index("--tls-key-file") + 1]
    assert (cert, key) == (f"{m.TOKEN_DIR}/{m.TLS_CERT_KEY}", f"{m.TOKEN_DIR}/{m.TLS_KEY_KEY}")
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "PRIVATE KEY" not in repr(spec)  # a spec in a log line or a traceback shows no key


def test_the_cronjob_runs_one_at_a_time_on_its_schedule():
    docs = cronjob.manifests(cronjob=True, schedule="*/30 * * * *", image=DIGEST)
    job = next(d for d in docs if d["kind"] == "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid" and job["spec"]["schedule"] == "*/30 * * * *"


def test_a_run_is_taken_for_over_only_after_the_cronjob_would_have_stopped_it():
    job = next(d for d in cronjob.manifests(cronjob=True, schedule="@daily", image=DIGEST) if d["kind"] == "CronJob")
    stopped = job["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] + cronjob.COORDINATOR_GRACE_S
    assert m.RUN_DEADLINE_S > stopped


@pytest.mark.parametrize("schedule", ["", "every day", "0 3 * *", "0 3 * * * *", "@sometimes"])
def test_a_bad_schedule_is_a_usage_error(schedule):
    with pytest.raises(UsageError, match="--schedule"):
        cronjob.manifests(cronjob=True, schedule=schedule, image=DIGEST)


def test_cronjob_needs_a_schedule_and_schedule_needs_cronjob():
    with pytest.raises(UsageError, match="--cronjob needs --schedule"):
        cronjob.manifests(cronjob=True, image=DIGEST)
    with pytest.raises(UsageError, match="only goes with --cronjob"):
        cronjob.manifests(schedule="@daily", image=DIGEST)


# ---- the image: none by default, a tag or a digest, pull secrets -------------------------------


@pytest.mark.parametrize("cron", [False, True])
def test_without_an_image_the_manifests_are_refused_with_how_to_build_one(cron):
    with pytest.raises(UsageError, match="--image is required") as caught:
        cronjob.manifests(cronjob=cron, schedule="@daily" if cron else None)
    hint = caught.value.hint or ""
    assert "make image" in hint and "skopeo copy" in hint and "oci-archive:results/image/" in hint
    assert "@$(cat digest)" in hint and caught.value.exit_code == 2


def test_no_document_names_an_image_talbench_does_not_build():
    text = m.to_yaml(all_documents())
    assert "ghcr.io" not in text and not hasattr(m, "default_image")


def test_the_cronjob_pulls_by_digest_with_its_secrets_and_hands_them_to_the_run():
    docs = cronjob.manifests(cronjob=True, schedule="@daily", image=DIGEST, pull_secrets="regcred,mirror")
    job = next(d for d in docs if d["kind"] == "CronJob")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    containers = pod["initContainers"] + pod["containers"]
    assert {c["image"] for c in containers} == {DIGEST} and {c["imagePullPolicy"] for c in containers} == {
        "IfNotPresent"
    }
    args = pod["containers"][0]["args"]
    assert args[args.index("--image") + 1] == DIGEST
    assert [args[i + 1] for i, a in enumerate(args) if a == "--image-pull-secret"] == ["regcred", "mirror"]


def test_a_tag_is_pulled_every_time_a_digest_only_when_missing():
    for image, policy in (("reg.example/talbench:v0.2.0", "Always"), (DIGEST, "IfNotPresent")):
        docs = cronjob.manifests(image=image, pull_secrets=["regcred"])
        pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == image and pod["containers"][0]["imagePullPolicy"] == policy
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]


# ---- resources and the grace period -----------------------------------------------------------


def _agent_pod() -> dict:
    return m.agent_daemonset(m.AgentSpec(run_id="r", namespace="n", image=DIGEST, token="t"))["spec"]["template"][
        "spec"
    ]


def test_the_agent_pod_has_a_cpu_request_a_memory_limit_and_no_cpu_limit():
    resources = _agent_pod()["containers"][0]["resources"]
    assert "cpu" not in resources["limits"]  # a CFS quota would throttle the measurement itself
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"] == {"memory": m.MEMORY_LIMIT}


def test_the_grace_period_outlasts_the_agents_own_shutdown():
    from talbench.agents.main import SHUTDOWN_TIMEOUT

    grace = _agent_pod()["terminationGracePeriodSeconds"]
    assert grace == m.GRACE_PERIOD_S and grace >= SHUTDOWN_TIMEOUT + 10
    # the coordinator, stopped while it removes a run, waits for the agents' grace period and more
    from talbench.bench.dispatch.kube import KubeOptions

    assert cronjob.COORDINATOR_GRACE_S > KubeOptions().delete_timeout > grace


def test_a_crash_loop_reports_its_log_tail_without_log_access():
    assert _agent_pod()["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
