"""The opt-in live-etcd mode against a real etcd started by the test (plain and with TLS client
certificates): nothing outside /talbench/<run-id>/ is written (full keyspace compared), a
non-empty prefix refuses, the prefix is empty after a normal run and after cancellation, and
without --allow-live-etcd-writes nothing is written at all."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talbench.agents.params import ParamError, validate
from talbench.agents.probes.etcd import admin
from talbench.agents.probes.etcd.generator import TlsFiles
from talbench.agents.probes.etcd.local_cluster import free_ports
from talbench.bench import scenario as scenario_files
from talbench.bench.cli.run import _live_etcd
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import CouldNotRun, ScenarioError, UsageError
from talbench.bench.execute import execute
from talbench.bench.judge import judge
from talbench.bench.metric import NullProgress
from talbench.bench.model import Status
from talbench.bench.plan import make_plan
from talbench.bench.probes import default_drivers
from talbench.bench.probes.etcd_live.driver import DRIVER, live_checks, measure_live_etcd
from talbench.bench.probes.etcd_live.settings import LiveEtcdSettings, url_list
from talbench.bench.scenario_include import shipped_files

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make etcd)")
RUN = "run-live"
PREFIX = f"/talbench/{RUN}/"
NEIGHBOURS = {  # keys around the prefix that a sloppy range would touch
    "/talbench/run-live": "no slash",
    "/talbench/run-live0": "next after the prefix",
    "/talbench/run-liv": "shorter",
    "/talbench/other/x": "another run",
    "/registry/pods/default/a": "kubernetes",
    "\x00": "lowest",
}


@contextlib.contextmanager
def real_etcd(data: Path, tls: dict[str, Path] | None = None) -> Iterator[str]:
    """One etcd process (the test's own child), stopped in finally."""
    client, peer = free_ports(2)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{client}"
    command = [
        "etcd",
        "--name",
        "live",
        "--data-dir",
        str(data),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        f"live=http://127.0.0.1:{peer}",
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    ]
    if tls:
        command += [
            "--cert-file",
            str(tls["server_cert"]),
            "--key-file",
            str(tls["server_key"]),
            "--trusted-ca-file",
            str(tls["ca"]),
            "--client-cert-auth",
        ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin.wait_for_leader([url], tls_files(tls), 20.0)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(data, ignore_errors=True)


def tls_files(tls: dict[str, Path] | None) -> TlsFiles | None:
    return TlsFiles(str(tls["ca"]), str(tls["client_cert"]), str(tls["client_key"])) if tls else None


def keyspace(url: str, tls: TlsFiles | None = None) -> dict[bytes, tuple]:
    gateway = admin.client(url, tls)
    try:
        return {
            meta["key"]: (value, meta["create_revision"], meta["mod_revision"], meta.get("version"))
            for value, meta in gateway.get_all()
        }
    finally:
        gateway.session.close()


def seed(url: str, tls: TlsFiles | None = None, extra: dict[str, str] | None = None) -> None:
    gateway = admin.client(url, tls)
    try:
        for key, value in {**NEIGHBOURS, **(extra or {})}.items():
            gateway.put(key, value)
    finally:
        gateway.session.close()


@pytest.fixture
def etcd_url(tmp_path: Path) -> Iterator[str]:
    if shutil.which("etcd") is None:
        pytest.skip("needs etcd (make etcd)")
    with real_etcd(tmp_path / "etcd") as url:
        seed(url)
        yield url


# ---- options ------------------------------------------------------------------------------------


def live_etcd_config(endpoints: str, **settings: Any) -> LiveEtcdSettings:
    """Settings as the CLI validates them from its options."""
    return validate(LiveEtcdSettings, {"endpoints": url_list(endpoints), "run_id": RUN, **settings})


@pytest.mark.parametrize(
    "endpoints, settings, words",
    [
        ("", {}, "endpoints: .*at least 1 item"),
        ("etcd:2379", {}, r"endpoints\.0: String should match pattern"),
        ("http://127.0.0.1:2379/v3", {}, r"endpoints\.0"),
        ("http://127.0.0.1:2379", {"metrics_urls": ["127.0.0.1:2381"]}, r"metrics_urls\.0"),
        ("http://127.0.0.1:2379", {"profile": "m"}, "profile .*--allow-live-etcd-writes"),
        ("http://127.0.0.1:2379", {"profile": "huge", "allow_writes": True}, "profile: must be 's', 'm', 'l' or 'xl'"),
        ("https://127.0.0.1:2379", {"cert": __file__}, "cert and key go together"),
        ("https://127.0.0.1:2379", {"cacert": "/nonexistent/ca.pem"}, "cacert: Path does not point to a file"),
        ("http://127.0.0.1:2379", {"cacert": __file__}, "cacert and cert need https://"),
        ("http://127.0.0.1:2379", {"run_id": "../x"}, "run_id: String should match pattern"),
        ("http://127.0.0.1:2379", {"run_id": "Run_1"}, "run_id"),
        ("http://127.0.0.1:2379", {"duration": 0.5}, "duration must be at least 1"),
    ],
)
def test_bad_settings_name_the_field(endpoints: str, settings: dict, words: str) -> None:
    with pytest.raises(ParamError, match=words):
        live_etcd_config(endpoints, **settings)


def test_defaults_are_read_only_and_profile_s() -> None:
    config = live_etcd_config("http://127.0.0.1:2379, http://127.0.0.2:2379/,http://127.0.0.1:2379")
    assert config.endpoints == ("http://127.0.0.1:2379", "http://127.0.0.2:2379")
    assert not config.allow_writes and config.load_profile == "s" and config.prefix == PREFIX and config.tls is None
    assert [c.metric for c in live_checks(config)] == ["etcd-live.has_leader", "etcd-live.members", "etcd-live.db_size"]
    writing = DRIVER.quicken(live_etcd_config("http://127.0.0.1:2379", allow_writes=True))
    assert (
        writing.duration == 10 and writing.quick and "etcd-live.rate_ratio" in [c.metric for c in live_checks(writing)]
    )
    short = DRIVER.quicken(live_etcd_config("http://127.0.0.1:2379", duration=3.0))
    assert short.duration == 3.0 and short.quick
    raw = {"endpoints": ["http://127.0.0.1:2379"], "run_id": RUN, "duration": "5s"}
    assert DRIVER.settings(raw, quick=False).duration == 5.0
    with pytest.raises(ScenarioError, match="endpoints"):
        DRIVER.settings({"duration": "5s"}, quick=False)


def test_the_live_probe_is_registered_and_its_limits_are_the_scenario_fragments() -> None:
    assert default_drivers()["etcd-live"] is DRIVER and DRIVER.declaration is None
    shipped = scenario_files.load(shipped_files()["_etcd-live"], {m.name: m for m in DRIVER.metrics()})
    assert {check.metric for check in shipped.checks} <= {m.name for m in DRIVER.metrics()}
    everything = live_etcd_config("http://127.0.0.1:2379", allow_writes=True, metrics_urls=["http://127.0.0.1:2381"])
    assert live_checks(everything) == shipped.checks


def cli_args(**options: Any) -> argparse.Namespace:
    values = {
        "etcd_endpoints": None,
        "etcd_cacert": None,
        "etcd_cert": None,
        "etcd_key": None,
        "etcd_metrics_urls": None,
        "etcd_profile": None,
        "allow_live_etcd_writes": False,
        "quick": False,
    }
    return argparse.Namespace(**{**values, **options})


def test_the_cli_turns_a_bad_option_into_a_usage_error() -> None:
    with pytest.raises(UsageError, match="live etcd: cert and key go together") as caught:
        _live_etcd(cli_args(etcd_endpoints="https://127.0.0.1:2379", etcd_cert=__file__), default_drivers(), RUN)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="need --etcd-endpoints"):
        _live_etcd(cli_args(etcd_profile="m"), default_drivers(), RUN)
    drivers = default_drivers()
    assert _live_etcd(cli_args(), drivers, RUN) == (None, ())
    config, checks = _live_etcd(
        cli_args(
            etcd_endpoints="http://127.0.0.1:2379",
            etcd_metrics_urls="http://127.0.0.1:2381",
            allow_live_etcd_writes=True,
            etcd_profile="m",
        ),
        drivers,
        RUN,
    )
    assert config.load_profile == "m" and config.metrics_urls == ("http://127.0.0.1:2381",) and config.run_id == RUN
    assert "live-etcd-wal-fsync" in [c.name for c in checks] and "live-etcd-write-rate" in [c.name for c in checks]


async def test_an_unreachable_etcd_could_not_run() -> None:
    port = free_ports(1)[0]
    config = live_etcd_config(f"http://127.0.0.1:{port}", allow_writes=True)
    with pytest.raises(CouldNotRun, match="did not answer"):
        await measure_live_etcd(config)


# ---- against a real etcd -----------------------------------------------------------------------------


@pytest.mark.processes
@needs_etcd
async def test_writes_stay_in_the_prefix_and_the_prefix_is_emptied(etcd_url: str) -> None:
    before = keyspace(etcd_url)
    config = live_etcd_config(etcd_url, allow_writes=True, duration=2.0)
    measurement = await measure_live_etcd(config)
    load = measurement.data["result"]["load"]
    assert load["requests"]["planned"] == 300 and load["requests"]["ok"] == 300
    assert measurement.data["result"]["cleanup"]["deleted"] == 300
    assert await asyncio.to_thread(admin.prefix_count, etcd_url, PREFIX) == 0
    assert keyspace(etcd_url) == before  # not one key outside the prefix was touched


@pytest.mark.processes
@needs_etcd
async def test_a_prefix_that_holds_keys_refuses_and_writes_nothing(etcd_url: str) -> None:
    seed(etcd_url, extra={PREFIX + "left-over": "someone's"})
    before = keyspace(etcd_url)
    config = live_etcd_config(etcd_url, allow_writes=True, duration=2.0)
    with pytest.raises(UsageError, match="already holds 1 key"):
        await measure_live_etcd(config)
    assert keyspace(etcd_url) == before


@pytest.mark.processes
@needs_etcd
async def test_cancelling_mid_load_empties_the_prefix(etcd_url: str) -> None:
    before = keyspace(etcd_url)
    config = live_etcd_config(etcd_url, allow_writes=True, duration=30.0)
    task = asyncio.ensure_future(measure_live_etcd(config))
    give_up = time.monotonic() + 20
    while await asyncio.to_thread(admin.prefix_count, etcd_url, PREFIX) < 50:
        assert time.monotonic() < give_up and not task.done(), "the load never started"
        await asyncio.sleep(0.2)
    task.cancel()  # what Ctrl-C does to the run
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(admin.prefix_count, etcd_url, PREFIX) == 0
    assert keyspace(etcd_url) == before


@pytest.mark.processes
@needs_etcd
async def test_read_only_writes_nothing_and_judges_the_histograms_over_the_window(etcd_url: str) -> None:
    """Someone else writes during the window (as a live cluster would): talbench reads the
    fsync/commit histograms' delta and writes nothing itself."""
    before = keyspace(etcd_url)
    config = live_etcd_config(etcd_url, metrics_urls=[etcd_url], duration=3.0)
    stop = threading.Event()

    def traffic() -> None:
        gateway = admin.client(etcd_url)
        i = 0
        while not stop.is_set():
            gateway.put(f"/traffic/{i % 20}", "x" * 100)
            i += 1
            time.sleep(0.01)
        gateway.session.close()

    writer = threading.Thread(target=traffic)
    writer.start()
    try:
        fleet = Fleet(RUN, (), {})
        checks = live_checks(config)
        drivers = {"etcd-live": DRIVER}
        metrics = {m.name: m for m in drivers["etcd-live"].metrics()}
        plan = make_plan(checks, (), metrics)
        execution = await execute(plan, fleet, drivers, {"etcd-live": config}, NullProgress())
    finally:
        stop.set()
        writer.join(10)
    verdicts = {v.check: v for v in judge(plan, execution.results, (), metrics)}
    assert verdicts["live-etcd-leader"].status is Status.PASS
    assert verdicts["live-etcd-members"].observed == 1
    fsync = verdicts["live-etcd-wal-fsync"]
    assert fsync.status in (Status.PASS, Status.FAIL) and fsync.observed > 0 and "histogram_quantile" in fsync.detail, (
        fsync
    )
    assert verdicts["live-etcd-backend-commit"].status in (Status.PASS, Status.FAIL, Status.INVALID)
    after = keyspace(etcd_url)
    assert {k: v for k, v in after.items() if not k.startswith(b"/traffic/")} == {
        k: v for k, v in before.items() if not k.startswith(b"/traffic/")
    }
    assert not any(k.startswith(b"/talbench/run-live/") for k in after)


def _make_tls(directory: Path) -> dict[str, Path]:
    directory.mkdir()
    files = {
        name: directory / name for name in ("ca", "ca_key", "server_cert", "server_key", "client_cert", "client_key")
    }

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(files["ca_key"]),
        "-out",
        str(files["ca"]),
        "-days",
        "1",
        "-subj",
        "/CN=talbench-test-ca",
    )
    # etcd's JSON gateway dials its own gRPC port with the server certificate: it needs clientAuth too
    for who, usage, san in (
        ("server", "serverAuth,clientAuth", "subjectAltName=IP:127.0.0.1\n"),
        ("client", "clientAuth", ""),
    ):
        csr = directory / f"{who}.csr"
        ext = directory / f"{who}.ext"
        ext.write_text(f"{san}extendedKeyUsage={usage}\n")
        run(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(files[f"{who}_key"]),
            "-out",
            str(csr),
            "-subj",
            f"/CN=talbench-{who}",
        )
        run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(files["ca"]),
            "-CAkey",
            str(files["ca_key"]),
            "-CAcreateserial",
            "-out",
            str(files[f"{who}_cert"]),
            "-days",
            "1",
            "-extfile",
            str(ext),
        )
    return files


@pytest.mark.processes
@needs_etcd
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_tls_client_certificates_reach_the_load_and_the_cleanup(tmp_path: Path) -> None:
    tls = _make_tls(tmp_path / "pki")
    with real_etcd(tmp_path / "etcd-tls", tls) as url:
        files = tls_files(tls)
        seed(url, files)
        before = keyspace(url, files)
        config = live_etcd_config(
            url,
            allow_writes=True,
            duration=2.0,
            cacert=str(tls["ca"]),
            cert=str(tls["client_cert"]),
            key=str(tls["client_key"]),
        )
        measurement = await measure_live_etcd(config)
        assert measurement.data["result"]["load"]["requests"]["ok"] == 300
        assert keyspace(url, files) == before
        no_cert = live_etcd_config(url, cacert=str(tls["ca"]))
        with pytest.raises(CouldNotRun, match="did not answer"):
            await measure_live_etcd(no_cert)
