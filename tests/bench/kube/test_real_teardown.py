"""A run's teardown against the real control plane of the session's Kubernetes lab
(tests/bench/kube/real_cluster.py): the namespace controller, not an emulator, decides when the
run's namespace is gone.

- a deletion a finalizer holds for 60 s: run.json and junit.xml are written before it finishes,
  and the run then ends as usual;
- a deletion that cannot finish (an APIService pointing at a Service that does not exist stalls
  the namespace controller's discovery): the results are written, one line names what is left and
  the ``talbench clean`` command, exit 3; that command removes it once the APIService is gone.

The runs are short (``--only control-plane-path-mtu``: agents on the three control planes, a path
MTU search that takes a second).
"""

from __future__ import annotations

import json
import secrets
import shlex
import time

import pytest

from tests.bench.kube.real_runs import Running, assert_nothing_left, kubelet_containers
from tests.bench.lab.helpers import until

pytestmark = [pytest.mark.root("ip", "sysctl", "runc"), pytest.mark.lab]

HOLD = 60.0  # seconds the test's finalizer holds the namespace
FINALIZER = "talbench.test/hold"
HELD = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  namespace: {namespace}
  finalizers: [{finalizer}]
data: {{why: "holds the namespace's deletion until the test removes the finalizer"}}
"""
NOWHERE = """\
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.{group}}}
spec:
  group: {group}
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true
  service: {{namespace: default, name: talbench-test-nowhere, port: 443}}
"""


def _phase(cluster, namespace: str) -> str:
    done = cluster.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}")
    return done.stdout.strip() if done.returncode == 0 else ""


def _release(cluster, namespace: str) -> None:
    cluster.kubectl(
        "patch", "configmap", "held", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )


def _short_run(cluster, out, *extra: str) -> list[str]:
    return cluster.run_argv(out, "--scenario", "control-plane", "--only", "control-plane-path-mtu", "--quick", *extra)


def test_results_are_written_before_a_namespace_deletion_held_by_a_finalizer_finishes(real_cluster, tmp_path):
    before = kubelet_containers(real_cluster)
    running = Running(real_cluster, _short_run(real_cluster, tmp_path, "--delete-timeout", "180"))
    namespace = ""
    released: float | None = None
    try:
        run_id = running.run_id()
        namespace = f"talbench-{run_id}"
        until("the run's namespace", lambda: _phase(real_cluster, namespace) == "Active", 60, interval=0.2)
        put = real_cluster.kubectl("apply", "-f", "-", stdin=HELD.format(namespace=namespace, finalizer=FINALIZER))
        assert put.returncode == 0, put.stderr
        until("the run deleting its namespace", lambda: _phase(real_cluster, namespace) == "Terminating", 300)
        terminating = time.time()
        run_json, junit = tmp_path / run_id / "run.json", tmp_path / run_id / "junit.xml"
        assert run_json.exists() and junit.exists(), "no results while the namespace is being deleted"
        time.sleep(max(0.0, terminating + HOLD - time.time()))
        assert _phase(real_cluster, namespace) == "Terminating" and running.proc.poll() is None
        assert running.saw(rf"cleanup: removing the run's namespace {namespace}: waiting for")
        released = time.time()
        _release(real_cluster, namespace)
        code = running.wait(120)
        ended = time.time()
    finally:
        if namespace and released is None:
            _release(real_cluster, namespace)
        running.stop()
    print(f"held {released - terminating:.0f}s; the run ended {ended - released:.0f}s after the release, exit {code}")
    assert code in (0, 1), running.stderr[-3000:]
    assert run_json.stat().st_mtime < released and junit.stat().st_mtime < released
    assert {v["check"] for v in json.loads(run_json.read_text())["verdicts"]} >= {"control-plane-path-mtu"}
    assert "teardown did not finish" not in running.stderr and "talbench clean" not in running.stderr
    assert_nothing_left(real_cluster, run_id, before)


def test_a_deletion_that_cannot_finish_keeps_the_results_and_names_the_clean_command(real_cluster, tmp_path):
    before = kubelet_containers(real_cluster)
    group = f"nowhere-{secrets.token_hex(3)}.talbench.test"
    made = real_cluster.kubectl("apply", "-f", "-", stdin=NOWHERE.format(group=group))
    assert made.returncode == 0, made.stderr
    try:
        started = time.monotonic()
        done = real_cluster.cli(*_short_run(real_cluster, tmp_path, "--delete-timeout", "20"), timeout=400)
        print(f"run with a stalled teardown: {time.monotonic() - started:.0f}s, exit {done.returncode}")
        assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-3000:]
        (run_dir,) = tmp_path.iterdir()
        run_id = run_dir.name
        assert (run_dir / "run.json").exists() and (run_dir / "junit.xml").exists()
        assert "Results:" in done.stdout  # the verdicts were shown, then what is left
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("talbench: error: the results are written; the run's teardown did not finish"), (
            done.stderr
        )
        assert f"namespace talbench-{run_id} (still terminating)" in last
        command = last.split("remove it with: ", 1)[1]
        assert shlex.split(command) == [
            "talbench",
            "clean",
            "--run-id",
            run_id,
            "--kubeconfig",
            str(real_cluster.kubeconfig),
        ]
        assert f"namespace/talbench-{run_id}" in real_cluster.talbench_namespaces()
    finally:
        gone = real_cluster.kubectl("delete", "apiservice", f"v1.{group}", "--ignore-not-found")
        assert gone.returncode == 0, gone.stderr
    started = time.monotonic()
    cleaned = real_cluster.cli(*shlex.split(command)[1:], timeout=300)
    print(f"talbench clean after the APIService went: {time.monotonic() - started:.0f}s")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert_nothing_left(real_cluster, run_id, before)
