"""Authorization and admission on a real API server (the session's Kubernetes lab, RBAC and
Talos' Pod Security admission configuration).

For each mode talbench runs in (own namespace, ``--namespace NS``, the CronJob's in-cluster
coordinator) an identity bound to nothing but the roles ``talbench manifests`` prints (a
ServiceAccount token from the TokenRequest API; it also has what every authenticated identity
has: discovery, /version, self reviews) runs a real measurement: a 403 anywhere fails the run, and
with one rule taken away the run stops naming the verb and resource.  Pod Security rejects the
agents in a namespace without the privileged label with the API server's own words, and admits the
CronJob's coordinator under ``restricted``.  ``talbench clean`` removes expired runs only.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from talbench.bench.kube import manifests as m
from tests.bench.kube.real_cluster import RealCluster
from tests.bench.kube.real_objects import Objects
from tests.bench.lab.helpers import until

pytestmark = [pytest.mark.root("ip", "sysctl", "runc"), pytest.mark.lab]

QUICK_RUN = ("--scenario", "control-plane", "--only", "rtt", "--quick")
RUN_TIMEOUT = 420.0
SUFFIX = secrets.token_hex(3)
HOME = f"tbrb-{SUFFIX}"  # where the test identities' ServiceAccounts live


@pytest.fixture(scope="module")
def objects(real_cluster: RealCluster) -> Iterator[Objects]:
    made = Objects(real_cluster, HOME)
    made.namespace(HOME)
    try:
        yield made
    finally:
        made.remove()


def roles_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in ("Role", "ClusterRole")]


def printed(cluster: RealCluster, *args: str) -> str:
    done = cluster.cli("manifests", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def one_run(out: Path) -> dict[str, Any]:
    (run_json,) = out.glob("*/run.json")
    return dict(json.loads(run_json.read_text()))


def assert_measured_without_refusal(done: Any, out: Path) -> dict[str, Any]:
    said = f"exit {done.returncode}\nstderr: {done.stderr}\nstdout tail: {done.stdout[-2000:]}"
    assert done.returncode in (0, 1), said
    # a 403 as a number of its own: run ids carry timestamps ("20261126-134034-...")
    refused = "forbidden" in (done.stdout + done.stderr).lower() or re.search(r"\b403\b", done.stderr)
    assert not refused, said
    record = one_run(out)
    assert record["unready"] == {}, said  # every agent was reached (a 403 through the proxy would show here)
    assert not [v for v in record["verdicts"] if v["status"] == "no_data"], said
    return record


def namespaces(cluster: RealCluster) -> set[str]:
    """The talbench namespaces there are (terminating ones included), by name."""
    return {name.removeprefix("namespace/") for name in cluster.talbench_namespaces()}


def run_objects(cluster: RealCluster, run_id: str, namespace: str) -> list[str]:
    done = cluster.kubectl(
        "-n",
        namespace,
        "get",
        "daemonsets,secrets,serviceaccounts,pods",
        "-l",
        f"{m.LABEL_RUN_ID}={run_id}",
        "-o",
        "name",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


# ---- a real run per mode, as an identity holding only the printed roles ----------------------


def test_own_namespace_mode_runs_with_only_the_printed_cluster_role(real_cluster, objects, tmp_path):
    docs = objects.apply(printed(real_cluster, "--rbac"))
    assert [d["kind"] for d in docs] == ["ClusterRole"]
    kubeconfig = objects.identity("own", roles_of(docs), tmp_path)
    out = tmp_path / "out"
    done = real_cluster.cli(*real_cluster.run_argv(out, *QUICK_RUN, kubeconfig=kubeconfig), timeout=RUN_TIMEOUT)
    record = assert_measured_without_refusal(done, out)
    assert m.run_namespace(record["run_id"]) not in namespaces(real_cluster)  # nothing left


def test_namespace_mode_runs_with_only_the_printed_role_and_cluster_reads(real_cluster, objects, tmp_path):
    namespace = objects.namespace(f"tbrb-ns-{SUFFIX}", m.PSA_LABELS)
    docs = objects.apply(printed(real_cluster, "--rbac", "--namespace", namespace))
    assert sorted(d["kind"] for d in docs) == ["ClusterRole", "Role"]
    kubeconfig = objects.identity("existing", roles_of(docs), tmp_path)
    out = tmp_path / "out"
    argv = real_cluster.run_argv(out, *QUICK_RUN, "--namespace", namespace, kubeconfig=kubeconfig)
    record = assert_measured_without_refusal(real_cluster.cli(*argv, timeout=RUN_TIMEOUT), out)
    assert run_objects(real_cluster, record["run_id"], namespace) == []  # nothing left


def test_one_rule_less_and_the_run_stops_naming_the_verb_and_resource(real_cluster, objects, tmp_path):
    (role,) = yaml.safe_load_all(printed(real_cluster, "--rbac"))
    role["metadata"]["name"] = f"talbench-runner-no-daemonsets-{SUFFIX}"
    role["rules"] = [rule for rule in role["rules"] if rule.get("resources") != ["daemonsets"]]
    docs = objects.apply(yaml.safe_dump(role))
    kubeconfig = objects.identity("minus", docs, tmp_path)
    before = namespaces(real_cluster)
    done = real_cluster.cli(
        *real_cluster.run_argv(tmp_path / "out", *QUICK_RUN, kubeconfig=kubeconfig), timeout=RUN_TIMEOUT
    )
    said = f"exit {done.returncode}\nstderr: {done.stderr}"
    assert done.returncode == 3, said
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("talbench: error:")]
    assert 'cannot create resource "daemonsets" in API group "apps"' in error, said
    assert "talbench manifests" in done.stderr, said  # where the roles are
    until("the run's namespace removed", lambda: namespaces(real_cluster) <= before, 120)


def test_the_cronjob_coordinator_runs_in_cluster_with_only_its_printed_roles(real_cluster, objects, tmp_path):
    namespace = f"tbrb-cron-{SUFFIX}"
    text = printed(
        real_cluster, "--cronjob", "--schedule", "0 3 * * *", "--namespace", namespace, "--image", real_cluster.image
    )
    docs = list(yaml.safe_load_all(text))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    objects.apply(m.to_yaml([d for d in docs if d["kind"] != "CronJob"]))  # it would fire at 03:00
    job_spec = copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])
    coordinator = job_spec["template"]["spec"]["containers"][0]
    coordinator["args"] += ["--only", "rtt", "--quick"]  # the scheduled run, shortened
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "talbench-now", "namespace": namespace, "labels": cron["metadata"]["labels"]},
        "spec": job_spec,
    }
    objects.apply(yaml.safe_dump(job))

    def finished() -> dict[str, Any] | None:
        pods = real_cluster.get_json("pods", "-n", namespace, "-l", "job-name=talbench-now")["items"]
        for pod in pods:
            for status in pod.get("status", {}).get("containerStatuses") or ():
                if status["name"] == "coordinator" and (status.get("state") or {}).get("terminated"):
                    return dict(status["state"]["terminated"])
        return None

    terminated = until("the coordinator's Job", finished, RUN_TIMEOUT, interval=2)
    logs = real_cluster.kubectl("-n", namespace, "logs", "job/talbench-now", "-c", "coordinator").stdout
    init = real_cluster.kubectl("-n", namespace, "logs", "job/talbench-now", "-c", "clean").stdout
    said = f"coordinator: {terminated}\nlog: {logs[-3000:]}\nclean: {init}"
    assert terminated["exitCode"] in (0, 1), said
    assert "forbidden" not in (logs + init).lower(), said
    summary = json.loads(logs[logs.index("{") :])
    assert "no_data" not in summary["summary"], said  # every agent reached, at its node IP
    kept = real_cluster.get_json("configmaps", "-n", namespace, "-l", "app.kubernetes.io/component=result")["items"]
    assert [c["metadata"]["name"] for c in kept] == [f"talbench-result-{summary['run_id']}"], said
    assert run_objects(real_cluster, summary["run_id"], namespace) == []


# ---- Pod Security, with the API server's own words --------------------------------------------


def test_a_namespace_without_the_privileged_label_is_refused_with_the_api_servers_message(
    real_cluster, objects, tmp_path
):
    namespace = objects.namespace(f"tbrb-plain-{SUFFIX}")
    argv = real_cluster.run_argv(tmp_path / "out", *QUICK_RUN, "--namespace", namespace)
    done = real_cluster.cli(*argv, timeout=RUN_TIMEOUT)
    said = f"exit {done.returncode}\nstderr: {done.stderr}"
    assert done.returncode == 3, said
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("talbench: error:")]
    assert 'violates PodSecurity "baseline:latest"' in error and "hostNetwork=true" in error, said
    command = f"kubectl label namespace {namespace} --overwrite pod-security.kubernetes.io/enforce=privileged"
    assert command in done.stderr, said
    leftovers = real_cluster.kubectl("-n", namespace, "get", "daemonsets,secrets", "-l", m.LABEL_RUN_ID, "-o", "name")
    assert leftovers.stdout.split() == [], said  # removed, and the user's namespace left alone
    assert real_cluster.kubectl("get", "namespace", namespace).returncode == 0


def test_the_coordinator_pod_is_admitted_under_restricted(real_cluster, objects):
    namespace = objects.namespace(f"tbrb-restricted-{SUFFIX}", {"pod-security.kubernetes.io/enforce": "restricted"})
    objects.kubectl("-n", namespace, "create", "serviceaccount", "talbench-coordinator")
    text = printed(real_cluster, "--cronjob", "--schedule", "@daily", "--namespace", namespace, "--image", "r/t:1")
    cron = next(d for d in yaml.safe_load_all(text) if d["kind"] == "CronJob")

    def pod(spec: dict[str, Any], name: str) -> Any:
        return real_cluster.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            stdin=json.dumps(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
            ),
        )

    coordinator = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    admitted = pod(coordinator, "coordinator")
    assert admitted.returncode == 0 and "PodSecurity" not in admitted.stderr, admitted.stderr
    loosened = pod({**coordinator, "securityContext": {}}, "coordinator-loose")  # the check is not vacuous
    assert loosened.returncode != 0 and 'violates PodSecurity "restricted:latest"' in loosened.stderr
    warned = real_cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(cron))
    assert warned.returncode == 0 and "would violate PodSecurity" not in warned.stderr, warned.stderr


# ---- clean: expired runs go, runs in flight stay ----------------------------------------------


def _deadline(offset: float) -> dict[str, str]:
    return {m.ANNOTATION_DEADLINE: m.deadline_text(time.time() + offset)}


def _labelled(objects: Objects, kind: str, name: str, run_id: str, deadline: float, namespace: str = "") -> None:
    doc = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": m.run_labels(run_id),
            "annotations": _deadline(deadline),
            **({"namespace": namespace} if namespace else {}),
        },
    }
    objects.apply(yaml.safe_dump(doc))


def test_clean_removes_expired_runs_and_leaves_runs_in_flight(real_cluster, objects):
    live, expired = f"rbac-live-{SUFFIX}", f"rbac-expired-{SUFFIX}"
    _labelled(objects, "Namespace", m.run_namespace(live), live, 3600)
    _labelled(objects, "Namespace", m.run_namespace(expired), expired, -60)
    user = objects.namespace(f"tbrb-user-{SUFFIX}", {m.LABEL_RUN_ID: expired})  # not talbench's
    done = real_cluster.cli("clean", "--kubeconfig", str(real_cluster.kubeconfig), timeout=180)
    said = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, said
    assert f"removed namespace {m.run_namespace(expired)}" in done.stdout.splitlines(), said
    left = f"left namespace {m.run_namespace(live)} alone: run {live} is in flight until "
    assert any(line.startswith(left) for line in done.stdout.splitlines()), said
    assert f"'talbench clean --run-id {live}' removes it" in done.stdout, said
    assert m.run_namespace(live) in namespaces(real_cluster)
    assert m.run_namespace(expired) not in namespaces(real_cluster)
    assert real_cluster.kubectl("get", "namespace", user).returncode == 0
    by_id = real_cluster.cli("clean", "--kubeconfig", str(real_cluster.kubeconfig), "--run-id", live, timeout=180)
    assert by_id.stdout.splitlines() == [f"removed namespace {m.run_namespace(live)}"], by_id.stdout + by_id.stderr
    assert m.run_namespace(live) not in namespaces(real_cluster)


def test_clean_in_a_shared_namespace_leaves_a_run_in_flight_and_what_is_not_talbenchs(real_cluster, objects):
    namespace = objects.namespace(f"tbrb-shared-{SUFFIX}", m.PSA_LABELS)
    live, expired = f"rbac-live2-{SUFFIX}", f"rbac-expired2-{SUFFIX}"
    for run, offset in ((live, 3600), (expired, -60)):
        _labelled(objects, "ServiceAccount", f"talbench-agent-{run}", run, offset, namespace)
        _labelled(objects, "Secret", f"talbench-agent-{run}-token", run, offset, namespace)
    objects.kubectl("-n", namespace, "create", "secret", "generic", "unrelated")
    done = real_cluster.cli(
        "clean", "--kubeconfig", str(real_cluster.kubeconfig), "--namespace", namespace, timeout=180
    )
    said = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, said
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("removed")) == [
        f"removed secret {namespace}/talbench-agent-{expired}-token",
        f"removed serviceaccount {namespace}/talbench-agent-{expired}",
    ], said
    assert f"left the objects of run {live} in namespace {namespace} alone: the run is in flight " in done.stdout, said
    names = real_cluster.kubectl("-n", namespace, "get", "secrets,serviceaccounts", "-o", "name").stdout.split()
    assert f"secret/talbench-agent-{live}-token" in names and "secret/unrelated" in names
    assert f"serviceaccount/talbench-agent-{expired}" not in names
