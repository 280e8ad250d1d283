"""Credentials and transport against the real API server of the Kubernetes lab (real_cluster):
TLS with ``tls-server-name`` (API and pod-proxy calls), client certificates, exec plugins whose
credentials expire or are refused mid-run, a plugin's stderr, and proxies (``HTTPS_PROXY``,
``NO_PROXY``, the kubeconfig's ``proxy-url``).

Each test writes its own kubeconfig from the lab's admin one and drives ``talbench`` as a user
does (a child process).  The proxy is a minimal CONNECT proxy in the test, not a Debian one:
kubectl (Go) never takes a proxy from the environment for localhost or a loopback address, and
talbench keeps that rule, so the proxied kubeconfigs name the API server ``*.invalid`` (a name
that resolves nowhere) and only the proxy knows where it is: a run that works went through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.bench.kube.real_cluster import RealCluster

pytestmark = [pytest.mark.root("ip", "sysctl", "runc"), pytest.mark.lab]

RUN = ("--scenario", "control-plane", "--only", "rtt", "--quick")
RUN_TIMEOUT = 420.0
QUICK_TIMEOUT = 60.0
PROXIED_HOST = "kube-api.talbench.invalid"


def _kubeconfig(cluster: RealCluster, path: Path, *, user: dict[str, Any] | None = None, **fields: str) -> Path:
    """The lab's admin kubeconfig with cluster ``fields`` (server, tls-server-name, proxy-url)
    changed and, if given, another user."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"].update(fields)
    if user is not None:
        config["users"][0]["user"] = user
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _port(cluster: RealCluster) -> int:
    port = urlsplit(cluster.kube.server).port
    assert port is not None
    return port


@contextlib.contextmanager
def _run(cluster: RealCluster, out: Path, kubeconfig: Path, *, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A quick control-plane RTT run; yields (its process, its run.json or None).  Whatever
    namespace of the run is left afterwards is removed."""
    done = cluster.cli(*cluster.run_argv(out, *RUN, kubeconfig=kubeconfig), timeout=RUN_TIMEOUT, env=env)
    found = sorted(out.glob("*/run.json"))
    record = json.loads(found[0].read_text()) if found else None
    try:
        yield done, record
    finally:
        if record is not None and f"namespace/talbench-{record['run_id']}" in cluster.talbench_namespaces():
            cluster.cli("clean", "--kubeconfig", str(cluster.kubeconfig), "--run-id", record["run_id"], timeout=200)


def _assert_ran(done: Any, record: dict[str, Any] | None, server: str) -> None:
    """The run measured through the pod proxy of ``server``: every agent answered."""
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert record is not None, done.stderr[-2000:]
    kube = record["metadata"]["kube"]
    assert kube["server"] == server and kube["agent_access"] == "pod-proxy"
    assert not record["unready"], record["unready"]
    assert record["results"] and all(r["ok"] for r in record["results"]), [r["error"] for r in record["results"]]


def _error_line(done: Any) -> str:
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert lines, done.stderr
    return lines[0]


# --- TLS and client certificates -------------------------------------------------------------


def test_tls_server_name_covers_api_and_pod_proxy_calls(real_cluster, tmp_path):
    # the serving certificate names 127.0.0.1 and ::1 (and localhost, kubernetes, ...), not
    # 127.0.0.2: reached there (a relay to the lab's forwarder), it verifies only as "kubernetes"
    with Relay(("127.0.0.1", _port(real_cluster)), listen="127.0.0.2") as relay:
        server = f"https://127.0.0.2:{relay.port}"
        named = _kubeconfig(real_cluster, tmp_path / "named", server=server, **{"tls-server-name": "kubernetes"})
        with _run(real_cluster, tmp_path / "out", named) as (done, record):  # client certificate inline (-data)
            _assert_ran(done, record, server)
        unnamed = _kubeconfig(real_cluster, tmp_path / "unnamed", server=server)
        argv = real_cluster.run_argv(tmp_path / "out2", *RUN, kubeconfig=unnamed)
        failed = real_cluster.cli(*argv, timeout=QUICK_TIMEOUT)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    line = _error_line(failed)
    assert f"TLS verification of the Kubernetes API server at {server} (context" in line
    assert "IP address mismatch, certificate is not valid for '127.0.0.2'" in line
    assert "tls-server-name" in failed.stderr  # the hint says what to set
    assert not list((tmp_path / "out2").glob("*/run.json"))


def test_client_certificate_files(real_cluster, tmp_path):
    admin = yaml.safe_load(real_cluster.kubeconfig.read_text())["users"][0]["user"]
    (tmp_path / "pki").mkdir()
    for key in ("client-certificate", "client-key"):
        (tmp_path / "pki" / f"{key}.pem").write_bytes(base64.b64decode(admin[f"{key}-data"]))
    user = {"client-certificate": "pki/client-certificate.pem", "client-key": "pki/client-key.pem"}  # relative
    kubeconfig = _kubeconfig(real_cluster, tmp_path / "kubeconfig", user=user)
    with _run(real_cluster, tmp_path / "out", kubeconfig) as (done, record):
        _assert_ran(done, record, real_cluster.kube.server)


# --- exec plugins ------------------------------------------------------------------------------


@pytest.fixture
def sa_token(real_cluster, tmp_path) -> Iterator[Path]:
    """A file holding a real token the API server accepts: a ServiceAccount bound to
    cluster-admin, both removed afterwards (its tokens die with it)."""
    name = f"tb-cred-{uuid.uuid4().hex[:8]}"
    try:
        for argv in (
            ("create", "namespace", name),
            ("create", "serviceaccount", "exec-user", "-n", name),
            ("create", "clusterrolebinding", name, "--clusterrole=cluster-admin", f"--serviceaccount={name}:exec-user"),
        ):
            done = real_cluster.kubectl(*argv)
            assert done.returncode == 0, done.stderr
        token = real_cluster.kubectl("create", "token", "exec-user", "-n", name, "--duration=1h")
        assert token.returncode == 0, token.stderr
        path = tmp_path / "sa-token"
        path.write_text(token.stdout.strip())
        yield path
    finally:
        real_cluster.kubectl("delete", "clusterrolebinding", name, "--ignore-not-found")
        real_cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


def _exec_kubeconfig(cluster: RealCluster, tmp_path: Path, script: str) -> tuple[Path, Path]:
    """A kubeconfig whose user is an exec plugin (sh) that logs each call (its time) to a file,
    N being the call's number, then runs ``script``; returns (kubeconfig, the log)."""
    log = tmp_path / "plugin.log"
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        f"#!/bin/sh\ndate +%s.%N >> {log}\nN=$(wc -l < {log})\n"
        "credential() {  # TOKEN [EXPIRES]\n"
        '  stamp=""; [ -n "$2" ] && stamp=",\\"expirationTimestamp\\":\\"$2\\""\n'
        '  printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"%s"%s}}\\n\' "$1" "$stamp"\n'
        "}\n"
        'soon() { date -u -d "+$1 seconds" +%Y-%m-%dT%H:%M:%SZ; }\n'
        f"{script}\n"
    )
    plugin.chmod(0o755)
    user = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}
    }
    return _kubeconfig(cluster, tmp_path / "kubeconfig", user=user), log


def _calls(log: Path) -> list[float]:
    return [float(line) for line in log.read_text().split()] if log.exists() else []


def test_an_exec_credential_expiring_mid_run_is_fetched_again(real_cluster, tmp_path, sa_token):
    # each credential says it expires 6 s after it was handed out
    kubeconfig, log = _exec_kubeconfig(real_cluster, tmp_path, f'credential "$(cat {sa_token})" "$(soon 6)"')
    with _run(real_cluster, tmp_path / "out", kubeconfig) as (done, record):
        _assert_ran(done, record, real_cluster.kube.server)
        calls = _calls(log)
        assert len(calls) >= 3, calls
        assert calls[-1] - calls[0] >= 15, calls  # fetched again through the run, not only at its start


def test_a_refused_exec_credential_is_fetched_once_more_and_the_run_goes_on(real_cluster, tmp_path, sa_token):
    # call 1: good for 6 s; call 2: a token the API server refuses (401); then good for the rest
    script = (
        f'case $N in 1) credential "$(cat {sa_token})" "$(soon 6)" ;; 2) credential bogus-token ;; '
        f'*) credential "$(cat {sa_token})" ;; esac'
    )
    kubeconfig, log = _exec_kubeconfig(real_cluster, tmp_path, script)
    with _run(real_cluster, tmp_path / "out", kubeconfig) as (done, record):
        _assert_ran(done, record, real_cluster.kube.server)
        assert len(_calls(log)) >= 3  # the refusal of call 2's token made call 3
    assert "401" not in done.stderr


def test_an_exec_plugin_speaks_to_the_user(real_cluster, tmp_path, sa_token):
    script = (
        'echo "To log in, open https://login.example/device?code=TB-1234 in a browser" >&2\n'
        f'credential "$(cat {sa_token})"'
    )
    kubeconfig, log = _exec_kubeconfig(real_cluster, tmp_path, script)
    done = real_cluster.cli(
        "clean", "--kubeconfig", str(kubeconfig), "--run-id", f"nothing-{uuid.uuid4().hex[:8]}", timeout=QUICK_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "open https://login.example/device?code=TB-1234 in a browser" in done.stderr
    assert _calls(log)


# --- proxies -----------------------------------------------------------------------------------


class Relay:
    """A TCP relay on a loopback address (its own thread and event loop) to ``to``; with
    ``connect``, an HTTP CONNECT proxy instead, every tunnel going to ``to`` whatever host was
    asked for (``tunnels`` lists the host:port each asked for)."""

    def __init__(self, to: tuple[str, int], *, listen: str = "127.0.0.1", connect: bool = False) -> None:
        self.to = to
        self.listen = listen
        self.connect = connect
        self.tunnels: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.listen}:{self.port}"

    def __enter__(self) -> Relay:
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, self.listen, 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.connect:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                if method != "CONNECT":
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                self.tunnels.append(target)
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.to), 10)
            if self.connect:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def test_https_proxy_carries_the_run_and_no_proxy_bypasses_it(real_cluster, tmp_path):
    port = _port(real_cluster)
    server = f"https://{PROXIED_HOST}:{port}"
    kubeconfig = _kubeconfig(real_cluster, tmp_path / "kubeconfig", server=server, **{"tls-server-name": "kubernetes"})
    with Relay(("127.0.0.1", port), connect=True) as proxy:
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1"}
        with _run(real_cluster, tmp_path / "out", kubeconfig, env=env) as (done, record):
            _assert_ran(done, record, server)
        assert proxy.tunnels and set(proxy.tunnels) == {f"{PROXIED_HOST}:{port}"}
        seen = len(proxy.tunnels)
        bypass = {"HTTPS_PROXY": proxy.url, "NO_PROXY": ".talbench.invalid"}
        argv = real_cluster.run_argv(tmp_path / "out2", *RUN, kubeconfig=kubeconfig)
        direct = real_cluster.cli(*argv, timeout=QUICK_TIMEOUT, env=bypass)
        assert direct.returncode == 3, direct.stdout + direct.stderr
        assert f"cannot reach the Kubernetes API server at {server}" in _error_line(direct)
        assert len(proxy.tunnels) == seen  # not one more tunnel


def test_the_kubeconfig_proxy_url_beats_the_environment(real_cluster, tmp_path):
    port = _port(real_cluster)
    server = f"https://{PROXIED_HOST}:{port}"
    with Relay(("127.0.0.1", port), connect=True) as chosen, Relay(("127.0.0.1", port), connect=True) as ignored:
        kubeconfig = _kubeconfig(
            real_cluster,
            tmp_path / "kubeconfig",
            server=server,
            **{"tls-server-name": "kubernetes", "proxy-url": chosen.url},
        )
        env = {"HTTPS_PROXY": ignored.url, "NO_PROXY": PROXIED_HOST}  # neither applies to proxy-url
        done = real_cluster.cli(
            "clean",
            "--kubeconfig",
            str(kubeconfig),
            "--run-id",
            f"nothing-{uuid.uuid4().hex[:8]}",
            timeout=QUICK_TIMEOUT,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert chosen.tunnels and not ignored.tunnels
