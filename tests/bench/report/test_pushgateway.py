"""A run's figures as Prometheus metrics (bench/report/metrics.py) and the push request built for
them (bench/report/pushgateway.py).  The real Pushgateway and Prometheus are in test_prometheus.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.kube.cronjob import manifests
from talbench.bench.model import RunRecord, Status, Subject, Verdict
from talbench.bench.report.dashboard import dashboard
from talbench.bench.report.metrics import exposition
from talbench.bench.report.pushgateway import push, push_request
from talbench.bench.units import Dimension
from tests.bench.kube.conftest import free_port
from tests.bench.report.records import run_record


def samples(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if line and not line.startswith("#")]


def test_series_identity_holds_no_run_id_and_units_are_in_the_names():
    lines = samples(exposition(run_record("run-1")))
    assert [line for line in lines if "run-1" in line] == [
        'talbench_run_info{quick="false",run_id="run-1",target="kube",version="0.1.0"} 1.0'
    ]
    assert (
        'talbench_check_observed_seconds{check="etcd-wal-fsync",metric="etcd.wal_fsync_p99",subject="cp3"} 0.012'
        in lines
    )
    assert (
        'talbench_check_observed_ratio{check="control-plane-rtt-loss",metric="rtt.loss",subject="cp1-cp3"} 0.001'
        in lines
    )
    assert (
        'talbench_check_observed_bytes{check="control-plane-path-mtu",metric="mtu.path",subject="cp1-cp2"} 1500.0'
        in lines
    )
    # 800 Mbit/s is 100 MB/s: bytes are Prometheus's base unit
    assert any(
        line.startswith("talbench_check_observed_bytes_per_second{") and line.endswith(" 1e+08") for line in lines
    )
    assert (
        'talbench_check_observed_per_second{check="etcd-write-rate",metric="etcd.rate",subject="cluster"} 4000.0'
        in lines
    )
    assert (
        'talbench_check_observed{check="control-plane-count",metric="topology.control_planes",subject="cluster"} 3.0'
        in lines
    )
    assert 'talbench_check_limit_seconds{check="control-plane-rtt",level="fail",metric="rtt.p99"} 0.015' in lines
    assert "talbench_run_blocking_verdicts 2.0" in lines
    assert "talbench_run_duration_seconds 150.0" in lines


def test_the_status_is_a_state_set_and_a_missing_value_has_no_sample():
    lines = samples(exposition(run_record("r")))
    cp2 = [line for line in lines if 'subject="cp2"' in line and "etcd-wal-fsync" in line]
    assert [line for line in cp2 if line.endswith(" 1.0")] == [
        'talbench_check_status{check="etcd-wal-fsync",metric="etcd.wal_fsync_p99",status="no_data",subject="cp2"} 1.0'
    ]
    assert len(cp2) == 6  # one per status, no observed value
    assert {line.split()[-1] for line in cp2} == {"0.0", "1.0"}


def test_label_values_are_escaped():
    record = run_record("r")
    weird = Verdict('we"ird\\name\n', "m", Subject(()), Status.PASS, 1.0, Dimension.COUNT, "", "", "")
    text = exposition(RunRecord(**{**record.__dict__, "verdicts": (weird,)})).decode()
    assert 'check="we\\"ird\\\\name\\n"' in text


def test_one_group_per_scenario_and_cluster():
    record = run_record("run-1")
    request = push_request("http://gw:9091/", record)
    assert request.method == "PUT"
    # the kubeconfig context names the cluster; a value with '/' or ' ' goes base64 (prometheus_client)
    assert request.url == "http://gw:9091/metrics/job/talbench/cluster/admin%40prod-eu1/scenario/control-plane"
    assert push_request("http://gw:9091", record, cluster="eu 1").url.startswith(
        "http://gw:9091/metrics/job/talbench/cluster@base64/ZXUgMQ==/"
    )
    in_pod = RunRecord(**{**record.__dict__, "metadata": {"kube": {"context": "in-cluster"}}})
    assert push_request("http://gw:9091", in_pod).url == "http://gw:9091/metrics/job/talbench/scenario/control-plane"
    assert request.body == exposition(record)


async def test_an_unreachable_gateway_is_one_line_exit_3():
    port = free_port(["127.0.0.1"])
    with pytest.raises(CouldNotRun) as caught:
        await push(f"http://127.0.0.1:{port}", run_record("r"), timeout=3)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"cannot reach the Pushgateway at http://127.0.0.1:{port}")


async def test_a_url_that_is_not_http_is_a_usage_error():
    with pytest.raises(UsageError, match="expected an http"):
        await push("pushgateway:9091", run_record("r"))


def _talbench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.mark.processes
def test_the_dashboard_ships_with_the_cronjob_manifests():
    assert json.loads(_talbench("manifests", "--dashboard")) == dashboard()
    docs = list(
        yaml.safe_load_all(
            _talbench(
                "manifests",
                "--cronjob",
                "--schedule",
                "@daily",
                "--image",
                "registry.example/talbench:v1",
                "--pushgateway",
                "http://pushgateway.monitoring:9091",
                "--cluster",
                "prod-eu1",
            )
        )
    )
    (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
    args = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-4:] == ["--pushgateway", "http://pushgateway.monitoring:9091", "--cluster", "prod-eu1"]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["namespace"] == "talbench"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["talbench.json"]) == dashboard()
    without = manifests(cronjob=True, schedule="@daily", image="registry.example/talbench:v1")
    assert "ConfigMap" not in {d["kind"] for d in without}  # no Pushgateway, no metrics to graph
