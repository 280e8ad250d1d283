"""History in Prometheus, against the real thing: Debian's Pushgateway and Prometheus run as this
test's children on loopback ports with temporary storage, Prometheus scraping the gateway every
second (``honor_labels``, as a Pushgateway is scraped).  Two scheduled runs pushed one after the
other must give one continuous series per check and subject, and every query of the shipped
Grafana dashboard must return data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from talbench.bench.compare.changes import RunInfo, compare_verdicts
from talbench.bench.errors import CouldNotRun
from talbench.bench.model import Status
from talbench.bench.report.dashboard import dashboard
from talbench.bench.report.history import History
from talbench.bench.report.pushgateway import push, push_request
from talbench.bench.units import Dimension
from tests.bench.kube.conftest import free_port
from tests.bench.report.records import run_record

TOOLS = ("prometheus", "prometheus-pushgateway", "promtool")
_missing = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(
        bool(_missing), reason=f"needs {', '.join(_missing)} (Debian: prometheus, prometheus-pushgateway)"
    ),
]

OBSERVED = {
    Dimension.DURATION: "talbench_check_observed_seconds",
    Dimension.RATIO: "talbench_check_observed_ratio",
    Dimension.BYTES: "talbench_check_observed_bytes",
    Dimension.BITRATE: "talbench_check_observed_bytes_per_second",
    Dimension.RATE: "talbench_check_observed_per_second",
    Dimension.COUNT: "talbench_check_observed",
}
WAIT_S = 20.0  # for a process to answer, or for Prometheus to scrape what was pushed


@dataclass(frozen=True)
class Stack:
    gateway: str
    prometheus: str


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {WAIT_S:g}s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    gateway_port, prometheus_port = free_port(["127.0.0.1"]), free_port(["127.0.0.1"])
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]\n"
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        gateway_log = tmp / "pushgateway.log"
        processes.append(
            _start(
                [
                    "prometheus-pushgateway",
                    f"--web.listen-address=127.0.0.1:{gateway_port}",
                    f"--persistence.file={tmp / 'pushgateway.data'}",
                ],
                gateway_log,
            )
        )
        prometheus_log = tmp / "prometheus.log"
        processes.append(
            _start(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                prometheus_log,
            )
        )
        gateway, prometheus = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{prometheus_port}"
        _wait_ready(f"{gateway}/-/ready", processes[0], gateway_log)
        _wait_ready(f"{prometheus}/-/ready", processes[1], prometheus_log)
        yield Stack(gateway, prometheus)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _api(prometheus: str, endpoint: str, **params: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{prometheus}/api/v1/{endpoint}", params=params) as answer:
            document = await answer.json()
    assert document["status"] == "success", document
    return document["data"]


async def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    data = await _api(prometheus, "query", query=expr)
    return list(data["result"])


async def _range(prometheus: str, expr: str, since: float) -> list[dict[str, Any]]:
    """Every series of ``expr`` since ``since``, at 1 s steps; the last step comes after the last
    scrape (a step evaluates the latest sample at or before it)."""
    data = await _api(prometheus, "query_range", query=expr, start=str(since - 1), end=str(time.time() + 1), step="1")
    return list(data["result"])


async def _until_scraped(prometheus: str, expr: str) -> None:
    import asyncio

    deadline = time.monotonic() + WAIT_S
    while not await _query(prometheus, expr):
        assert time.monotonic() < deadline, f"Prometheus did not scrape {expr} within {WAIT_S:g}s"
        await asyncio.sleep(0.25)


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")


async def _variable_values(prometheus: str, query: str, start: float) -> list[str]:
    """What Grafana's ``label_values(SELECTOR, LABEL)`` offers: the label's values over the series
    the selector matches."""
    found = _LABEL_VALUES.match(query)
    assert found, f"not a label_values() query: {query}"
    params = {"start": str(start), "end": str(time.time())}
    if found["match"]:
        params["match[]"] = found["match"]
    return list(await _api(prometheus, f"label/{found['label']}/values", **params))


def _expand(expr: str, chosen: dict[str, str]) -> str:
    for name, value in chosen.items():
        expr = expr.replace(f"${name}", value)
    expr = expr.replace("$__range", "1h").replace("$__rate_interval", "1m").replace("$__interval", "15s")
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


async def test_two_scheduled_runs_are_one_continuous_series_per_check_and_subject(stack: Stack):
    started = time.time()
    first, second = run_record("run-1"), run_record("run-2", scale=2.0)

    target = await push(stack.gateway, first, cluster="lab-test")
    assert target == f"{stack.gateway}/metrics/job/talbench/cluster/lab-test/scenario/control-plane"
    await _until_scraped(stack.prometheus, 'talbench_run_info{run_id="run-1"}')
    await push(stack.gateway, second, cluster="lab-test")
    await _until_scraped(stack.prometheus, 'talbench_run_info{run_id="run-2"}')
    await _until_scraped(stack.prometheus, 'talbench_check_observed_seconds{subject="cp3"} == 0.024')

    # The Pushgateway's group holds the last run only: the group was replaced, not added to
    current = await _query(stack.prometheus, 'talbench_run_info{cluster="lab-test"}')
    assert [s["metric"]["run_id"] for s in current] == ["run-2"]
    assert current[0]["metric"]["cluster"] == "lab-test" and current[0]["metric"]["scenario"] == "control-plane"

    # Over both runs: one series per check and subject, carrying both runs' values
    series = await _range(stack.prometheus, '{__name__=~"talbench_check_observed.*",cluster="lab-test"}', started)
    identities = [(s["metric"]["__name__"], s["metric"]["check"], s["metric"]["subject"]) for s in series]
    expected = {(OBSERVED[v.dimension], v.check, str(v.subject)) for v in first.verdicts if v.observed is not None}
    assert sorted(identities) == sorted(expected)  # one series each, no duplicate per run
    assert len(identities) == 16  # 17 verdicts, one without a value (no_data)
    by_identity = {
        (s["metric"]["check"], s["metric"]["subject"]): {float(value) for _, value in s["values"]} for s in series
    }
    assert by_identity[("etcd-wal-fsync", "cp3")] == {0.012, 0.024}  # run 1, then run 2
    assert by_identity[("control-plane-tunnel-throughput", "cp1-cp2")] == {1e8, 2e8}  # 0.8 and 1.6 Gbit/s

    status = await _range(stack.prometheus, 'talbench_check_status{status="pass",cluster="lab-test"}', started)
    assert len(status) == len(first.verdicts)  # 17 verdicts, one series each over both runs

    # The run id is on talbench_run_info alone: one series per run there, none anywhere else
    runs = await _range(stack.prometheus, 'talbench_run_info{cluster="lab-test"}', started)
    assert sorted(s["metric"]["run_id"] for s in runs) == ["run-1", "run-2"]
    assert await _query(stack.prometheus, '{__name__=~"talbench_.+", __name__!="talbench_run_info", run_id!=""}') == []


async def test_every_dashboard_query_returns_data(stack: Stack):
    started = time.time()
    await push(stack.gateway, run_record("run-dash", scale=1.5), cluster="lab-test")
    await _until_scraped(stack.prometheus, 'talbench_run_info{run_id="run-dash"}')

    document = dashboard()
    variables = [v for v in document["templating"]["list"] if v["type"] == "query"]
    assert [v["name"] for v in variables] == ["cluster", "scenario", "check"]
    chosen: dict[str, str] = {}
    for variable in variables:
        values = await _variable_values(stack.prometheus, _expand(variable["query"]["query"], chosen), started - 3600)
        assert values, f"variable {variable['name']} offers nothing"
        chosen[variable["name"]] = variable["allValue"]  # the dashboard's default: All
    assert "lab-test" in await _variable_values(stack.prometheus, "label_values(talbench_run_info, cluster)", started)

    exprs = [(p["title"], t["expr"]) for p in document["panels"] for t in p["targets"]]
    assert len(exprs) == 17
    empty = [title for title, expr in exprs if not await _query(stack.prometheus, _expand(expr, chosen))]
    assert empty == []
    # one cluster and scenario picked, as a user would
    picked = {**chosen, "cluster": "lab-test", "scenario": "control-plane"}
    assert [title for title, expr in exprs if not await _query(stack.prometheus, _expand(expr, picked))] == []


def test_the_pushed_exposition_passes_promtool():
    first, second = run_record("run-1"), run_record("run-2", scale=2.0)
    # CronJob mode: the second run compared with the first, one verdict worse (talbench_check_regressed)
    worse = tuple(replace(v, status=Status.FAIL) if v.check == "control-plane-count" else v for v in second.verdicts)
    second = replace(second, verdicts=worse)
    history = History("compared with run run-1", "run-1", compare_verdicts(
        RunInfo.of(first), first.verdicts, RunInfo.of(second), second.verdicts).regressions)  # fmt: skip
    assert len(history.regressions) == 1
    for record, since in ((first, None), (second, history)):
        body = push_request("http://127.0.0.1:9091", record, cluster="lab-test", history=since).body
        assert (b"talbench_check_regressed{" in body) is (since is not None)
        checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


async def test_a_refusing_gateway_is_one_line_exit_3(stack: Stack):
    with pytest.raises(CouldNotRun) as caught:
        await push(stack.gateway + "/wrong-prefix", run_record("r"))
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    assert "refused the push: HTTP 404" in str(caught.value)


async def test_the_cluster_label_survives_the_grouping_key_path(stack: Stack):
    """The kubeconfig context names the cluster by default ('@' quoted in the path), and a name
    with '/' or ' ' goes base64: Prometheus sees the names as given."""
    await push(stack.gateway, run_record("run-context"))  # context admin@prod-eu1
    await push(stack.gateway, run_record("run-named"), cluster="eu 1/b")
    await _until_scraped(stack.prometheus, 'talbench_run_info{run_id="run-context",cluster="admin@prod-eu1"}')
    await _until_scraped(stack.prometheus, 'talbench_run_info{run_id="run-named",cluster="eu 1/b"}')
    fsync = await _query(stack.prometheus, 'talbench_check_observed_seconds{check="etcd-wal-fsync",subject="cp1"}')
    assert {s["metric"].get("cluster") for s in fsync} >= {"admin@prod-eu1", "eu 1/b"}


async def test_talbench_run_pushes_to_the_gateway(stack: Stack, tmp_path: Path):
    """``talbench run --target kube --pushgateway URL`` as a user runs it, against an emulated
    cluster (testbed/kubesim/emulator.py): the kubeconfig context names the cluster."""
    import asyncio
    import sys

    from testbed.kubesim.emulator import ApiEmulator
    from tests.bench.kube.conftest import loopback_nodes
    from tests.bench.kube.runs import SCENARIO

    scenario = tmp_path / "kube.yaml"
    scenario.write_text(SCENARIO)
    async with ApiEmulator(loopback_nodes(tmp_path, base=9)) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig", context="prod-eu1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "talbench.bench.cli", "run", "--scenario", str(scenario),
            "--kubeconfig", str(kubeconfig), "--out", str(tmp_path / "out"), "--format", "json",
            "--image", "registry.example/talbench@sha256:" + "ab" * 32, "--pushgateway", stack.gateway,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    await _until_scraped(stack.prometheus, f'talbench_run_info{{run_id="{summary["run_id"]}",cluster="prod-eu1"}}')

    rtt = await _query(stack.prometheus, 'talbench_check_observed_seconds{scenario="kube-e2e",cluster="prod-eu1"}')
    measured = {
        (v["check"], v["subject"]): v["observed"] for v in summary["verdicts"] if v["check"] == "control-plane-rtt"
    }
    assert {(s["metric"]["check"], s["metric"]["subject"]): float(s["value"][1]) for s in rtt} == pytest.approx(
        measured
    )
    assert len(measured) == 3
    status = await _query(stack.prometheus, 'talbench_check_status{scenario="kube-e2e",cluster="prod-eu1"} == 1')
    assert {(s["metric"]["check"], s["metric"]["subject"], s["metric"]["status"]) for s in status} == {
        (v["check"], v["subject"], v["status"]) for v in summary["verdicts"]
    }
