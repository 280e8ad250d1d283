"""Pushing a run's figures to a Pushgateway: a tiny aiohttp server on 127.0.0.1 plays the
gateway and records what it receives."""

from __future__ import annotations

import pytest
from aiohttp import web

from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.model import Status, Subject, Verdict
from talbench.bench.report.pushgateway import exposition, push
from talbench.bench.units import Dimension
from tests.bench.kube.conftest import free_port

VERDICTS = [
    Verdict(
        "control-plane-rtt",
        "rtt.p99",
        Subject(("cp1", "cp2")),
        Status.PASS,
        0.0012,
        Dimension.DURATION,
        "< 15ms",
        "ok",
        "src",
    ),
    Verdict(
        "control-plane-rtt",
        "rtt.p99",
        Subject(("cp1", "cp3")),
        Status.FAIL,
        0.021,
        Dimension.DURATION,
        "< 15ms",
        "bad",
        "src",
    ),
    Verdict(
        "etcd",
        "etcd.p99",
        Subject(("cp2",)),
        Status.NO_DATA,
        None,
        Dimension.DURATION,
        "< 10ms",
        'agent "x"\nmissing',
        "src",
    ),
]


@pytest.fixture
async def gateway():
    received: list[tuple[str, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((request.method, request.path, await request.text()))
        return web.Response(status=200 if request.path.startswith("/metrics/job/") else 404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(["127.0.0.1"])
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


async def test_a_run_is_pushed_as_one_group_per_scenario(gateway):
    url, received = gateway
    target = await push(url, "acceptance", "run-1", VERDICTS, ended=1700000000.0)
    assert target == f"{url}/metrics/job/talbench/scenario/acceptance"
    ((method, path, body),) = received
    assert method == "PUT" and path == "/metrics/job/talbench/scenario/acceptance"
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    assert (
        'talbench_check_value{check="control-plane-rtt",metric="rtt.p99",subject="cp1-cp3",unit="seconds",run_id="run-1"} 0.021'
        in lines
    )
    assert (
        'talbench_check_status{check="control-plane-rtt",metric="rtt.p99",subject="cp1-cp3",run_id="run-1"} 2' in lines
    )
    assert 'talbench_check_status{check="etcd",metric="etcd.p99",subject="cp2",run_id="run-1"} 3' in lines
    assert not any(line.startswith('talbench_check_value{check="etcd"') for line in lines)  # no value: no sample
    assert 'talbench_run_blocking_verdicts{run_id="run-1"} 2' in lines


def test_label_values_are_escaped():
    verdict = Verdict('we"ird\\name\n', "m", Subject(()), Status.PASS, 1.0, Dimension.COUNT, "", "", "")
    assert 'check="we\\"ird\\\\name\\n"' in exposition("r", [verdict])


async def test_an_unreachable_gateway_is_one_line_exit_3():
    port = free_port(["127.0.0.1"])
    with pytest.raises(CouldNotRun) as caught:
        await push(f"http://127.0.0.1:{port}", "acceptance", "r", VERDICTS, timeout=3)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"cannot reach the Pushgateway at http://127.0.0.1:{port}")


async def test_a_refusing_gateway_and_a_bad_url(gateway):
    url, _ = gateway
    with pytest.raises(CouldNotRun, match="refused the push: HTTP 404"):
        await push(url + "/wrong-prefix", "acceptance", "r", VERDICTS)
    with pytest.raises(UsageError):
        await push("pushgateway:9091", "acceptance", "r", VERDICTS)
