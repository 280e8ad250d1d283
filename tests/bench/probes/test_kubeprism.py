"""KubePrism check: the agent-side probe against real local servers on 127.0.0.1 (a TLS HTTP
server standing in for the API server behind KubePrism, a closed port, a plain-TCP listener),
and the coordinator's metric."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from talbench.agents.params import wire
from talbench.agents.probe import ProbeParamError
from talbench.agents.probes.kubeprism.probe import KubePrismSettings
from talbench.agents.probes.registry import declarations, default_probes
from talbench.bench.errors import ScenarioError
from talbench.bench.judge import judge_subject
from talbench.bench.model import Check, Measurement, ResultKey, Scope, Status, Subject
from talbench.bench.probes import default_drivers
from talbench.bench.probes.kubeprism.driver import DRIVER, KubePrismDriver, deadline
from talbench.bench.units import Dimension, parse_quantity
from tests.bench.kube.conftest import free_port

PROBE = default_probes()["kubeprism"]


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(port: int, ssl_context: ssl.SSLContext | None) -> web.AppRunner:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"message": "Unauthorized"}, status=401)

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner


async def run_probe(port: int, attempts: int = 2) -> dict:
    params = PROBE.parse({"port": port, "attempts": attempts, "timeout": 1.0, "interval": 0.0})
    return await asyncio.wait_for(PROBE.run(params, None), PROBE.time_limit(params))  # ctx unused


@pytest.mark.processes
async def test_an_api_server_answering_through_tls_counts_even_when_it_refuses_us(tls_context):
    port = free_port(["127.0.0.1"])
    runner = await serve(port, tls_context)
    try:
        result = await run_probe(port)
    finally:
        await runner.cleanup()
    assert result["answered"] == 2 and result["host"] == "127.0.0.1"
    assert all(a["tls"] and a["http_status"] == 401 for a in result["attempts"])


async def test_nothing_listening_is_no_answer_with_the_reason():
    result = await run_probe(free_port(["127.0.0.1"]), attempts=1)
    assert result["answered"] == 0
    assert result["attempts"][0]["connected"] is False and "Connect" in result["attempts"][0]["error"]


async def test_a_listener_without_tls_is_not_kubeprism():
    port = free_port(["127.0.0.1"])
    runner = await serve(port, None)
    try:
        result = await run_probe(port, attempts=1)
    finally:
        await runner.cleanup()
    assert (
        result["answered"] == 0 and result["attempts"][0]["connected"] is True and result["attempts"][0]["tls"] is False
    )


@pytest.mark.parametrize(
    "params",
    [
        {"port": 0},
        {"port": "7445"},
        {"attempts": 0},
        {"attempts": True},
        {"timeout": 0},
        {"timeout": 11},
        {"interval": -1},
        {"timeout_s": 1.0},
        {"host": "10.0.0.1"},
    ],
)
def test_parameters_are_bounded(params):
    with pytest.raises(ProbeParamError) as caught:
        PROBE.parse(params)
    assert next(iter(params)) in str(caught.value)  # the message names the field


def test_one_declaration_serves_the_scenario_the_driver_and_the_agent():
    assert declarations()["kubeprism"].settings is KubePrismSettings
    assert default_drivers()["kubeprism"] is DRIVER and DRIVER.declaration is declarations()["kubeprism"]
    settings = DRIVER.settings({"port": 7445, "attempts": 3, "timeout": "3s", "interval": "500ms"}, quick=False)
    assert settings == KubePrismSettings()  # the scenario's values are the defaults
    sent = wire(settings)
    assert sent == {"port": 7445, "attempts": 3, "timeout": 3.0, "interval": 0.5}  # the scenario's names on the wire
    assert PROBE.parse(sent) == settings
    assert deadline(settings) > PROBE.time_limit(settings)  # the coordinator outwaits the agent's own limit


def test_quick_runs_shorten_the_waits_and_bad_settings_name_the_field():
    quick = DRIVER.settings({"timeout": "5s", "interval": "2s", "attempts": 4}, quick=True)
    assert (quick.timeout, quick.interval, quick.attempts) == (1.0, 0.1, 4)
    for raw, field in (
        ({"port": 70000}, "port"),
        ({"timeout": "20s"}, "timeout"),
        ({"interval": "soon"}, "interval"),
        ({"retries": 2}, "retries"),
    ):
        with pytest.raises(ScenarioError, match=field):
            DRIVER.settings(raw, quick=False)


def test_the_metric_is_the_share_of_attempts_answered():
    metric = KubePrismDriver().metrics()[0]
    check = Check(
        "kubeprism",
        metric.name,
        Scope.ALL_NODES,
        parse_quantity("100 %", Dimension.RATIO),
        parse_quantity("1 %", Dimension.RATIO),
        "test",
    )
    key = ResultKey("kubeprism", "cp1")

    def status(answers: list[int | None]) -> Status:
        attempts = [
            {"http_status": a, "elapsed_s": 0.002, "error": None if a else "ConnectionRefusedError: refused"}
            for a in answers
        ]
        data = {"host": "127.0.0.1", "port": 7445, "attempts": attempts}
        return judge_subject(check, metric, Subject(("cp1",)), {key: Measurement(key, True, data=data)}, []).status

    assert status([401, 200, 403]) is Status.PASS
    assert status([401, None, 200]) is Status.WARN
    assert status([None, None, None]) is Status.FAIL
