"""Kubeconfig and in-cluster credentials: kubectl's precedence, contexts, every credential kind."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from talbench.bench.errors import CouldNotRun, NoPermission, UsageError
from talbench.bench.kube.client import connect
from talbench.bench.kube.config import (
    auth_header,
    in_cluster_target,
    load_kubeconfig,
    proxy_for,
    resolve_target,
)
from talbench.bench.kube.exec_plugin import interactive, run_exec_plugin, with_exec_credentials


def write(
    path: Path, *, contexts: dict[str, tuple[str, str]], current: str | None, clusters: dict, users: dict
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                **({"current-context": current} if current else {}),
                "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
                "users": [{"name": n, "user": u} for n, u in users.items()],
                "contexts": [
                    {"name": n, "context": {"cluster": c, "user": u, "namespace": "team"}}
                    for n, (c, u) in contexts.items()
                ],
            }
        )
    )
    return path


@pytest.fixture
def two_files(tmp_path):
    a = write(
        tmp_path / "a",
        contexts={"prod": ("pc", "pu")},
        current="prod",
        clusters={"pc": {"server": "https://prod:6443"}},
        users={"pu": {"token": "prod-token"}},
    )
    b = write(
        tmp_path / "b",
        contexts={"lab": ("lc", "lu"), "prod": ("lc", "lu")},
        current="lab",
        clusters={"lc": {"server": "https://lab:6443", "insecure-skip-tls-verify": True}},
        users={"lu": {"token": "lab-token"}},
    )
    return a, b


def test_kubeconfig_env_list_merges_first_wins(two_files):
    a, b = two_files
    env = {"KUBECONFIG": f"{a}:{b}", "HOME": "/nonexistent"}
    target = resolve_target(env=env)
    assert (target.server, target.context, target.token, target.namespace) == (
        "https://prod:6443",
        "prod",
        "prod-token",
        "team",
    )
    lab = resolve_target(context="lab", env=env)
    assert lab.server == "https://lab:6443" and lab.insecure is True


def test_the_kubeconfig_option_beats_the_environment(two_files):
    a, b = two_files
    target = resolve_target(str(b), env={"KUBECONFIG": str(a), "HOME": "/nonexistent"})
    assert target.context == "lab" and auth_header(target) == "Bearer lab-token"


def test_home_kubeconfig_is_the_fallback(tmp_path, two_files):
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    (tmp_path / "home" / ".kube" / "config").write_text(two_files[1].read_text())
    assert resolve_target(env={"HOME": str(tmp_path / "home")}).context == "lab"


def test_unknown_context_and_missing_file_are_usage_errors(two_files, tmp_path):
    with pytest.raises(UsageError, match=r"no context 'nope' \(contexts: prod\)"):
        load_kubeconfig(str(two_files[0]), "nope", env={})
    with pytest.raises(UsageError, match="no such file"):
        load_kubeconfig(str(tmp_path / "missing"), None, env={})
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(UsageError, match="kubeconfig"):
        load_kubeconfig(str(tmp_path / "bad"), None, env={})


def test_no_kubeconfig_and_not_in_a_cluster_could_not_run(tmp_path):
    with pytest.raises(CouldNotRun, match="no kubeconfig found"):
        resolve_target(env={"HOME": str(tmp_path)})


def test_in_cluster_credentials_when_no_kubeconfig_exists(tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token-1\n")
    (sa / "namespace").write_text("talbench")
    env = {"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    target = in_cluster_target(env, sa)
    assert target.in_cluster and target.server == "https://10.96.0.1:443" and target.namespace == "talbench"
    assert auth_header(target) == "Bearer sa-token-1"
    (sa / "token").write_text("sa-token-2")  # projected tokens rotate: read on every use
    assert auth_header(target) == "Bearer sa-token-2"
    assert in_cluster_target({"HOME": str(tmp_path)}, sa) is None


def test_client_certificate_data_and_relative_files(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("CA PEM")
    path = write(
        tmp_path / "config",
        contexts={"c": ("cl", "u")},
        current="c",
        clusters={"cl": {"server": "https://x:6443", "certificate-authority": "certs/ca.pem"}},
        users={
            "u": {
                "client-certificate-data": base64.b64encode(b"CERT").decode(),
                "client-key-data": base64.b64encode(b"KEY").decode(),
            }
        },
    )
    target = load_kubeconfig(str(path), None, env={})
    assert (target.ca_data, target.client_cert, target.client_key) == (b"CA PEM", b"CERT", b"KEY")
    assert auth_header(target) is None


def test_legacy_auth_providers_are_refused_clearly(tmp_path):
    path = write(
        tmp_path / "config",
        contexts={"c": ("cl", "u")},
        current="c",
        clusters={"cl": {"server": "https://x"}},
        users={"u": {"auth-provider": {"name": "gcp"}}},
    )
    with pytest.raises(UsageError, match="legacy auth-provider 'gcp'"):
        load_kubeconfig(str(path), None, env={})


@pytest.mark.processes
async def test_exec_plugins_give_a_token(tmp_path):
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        'echo "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",'
        '\\"status\\":{\\"token\\":\\"from-exec-$GREETING\\"}}"\n'
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    path = write(
        tmp_path / "config",
        contexts={"c": ("cl", "u")},
        current="c",
        clusters={"cl": {"server": "https://x"}},
        users={
            "u": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "./plugin.sh",
                    "env": [{"name": "GREETING", "value": "hi"}],
                }
            }
        },
    )
    target = await with_exec_credentials(load_kubeconfig(str(path), None, env={}))
    assert auth_header(target) == "Bearer from-exec-hi"


@pytest.mark.processes
async def test_a_failing_exec_plugin_could_not_run(tmp_path, capfd):
    plugin = tmp_path / "fail.sh"
    plugin.write_text("#!/bin/sh\necho 'login expired' >&2\nexit 1\n")
    plugin.chmod(0o755)
    path = write(
        tmp_path / "config",
        contexts={"c": ("cl", "u")},
        current="c",
        clusters={"cl": {"server": "https://x"}},
        users={"u": {"exec": {"command": str(plugin)}}},
    )
    target = load_kubeconfig(str(path), None, env={})
    with pytest.raises(CouldNotRun, match=r"failed \(exit 1\); its own message, if any, is above"):
        await run_exec_plugin(target.exec_plugin)
    assert "login expired" in capfd.readouterr().err  # the plugin's stderr is the user's


def _target(tmp_path, cluster: dict, user: dict | None = None):
    path = write(
        tmp_path / "proxied",
        contexts={"c": ("cl", "u")},
        current="c",
        clusters={"cl": cluster},
        users={"u": user or {"token": "t"}},
    )
    return load_kubeconfig(str(path), None, env={})


def test_proxy_url_beats_the_environment(tmp_path):
    target = _target(tmp_path, {"server": "https://api.example:6443", "proxy-url": "http://corp-proxy:3128"})
    env = {"HTTPS_PROXY": "http://env-proxy:8080", "NO_PROXY": "api.example"}
    assert proxy_for(target, env) == "http://corp-proxy:3128"  # NO_PROXY does not apply to proxy-url


@pytest.mark.parametrize(
    ("server", "env", "proxy"),
    [
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.example:6443", {"https_proxy": "p:3128"}, "http://p:3128"),  # no scheme: http
        ("https://api.example:6443", {"HTTP_PROXY": "http://p:3128"}, None),  # the https server's is HTTPS_PROXY
        ("http://api.example:8080", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other,api.example"}, None),
        ("https://cp.api.example:6443", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "api.example"}, None),
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".api.example"}, "http://p:3128"),
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "api.example:443"}, "http://p:3128"),
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "api.example:6443"}, None),
        ("https://10.5.0.2:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.5.0.0/16"}, None),
        ("https://10.6.0.2:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.5.0.0/16"}, "http://p:3128"),
        ("https://api.example:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, None),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:3128"}, None),  # loopback: never (Go's rule)
        ("https://localhost:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://[::1]:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    ],
)
def test_environment_proxy_as_kubectl_picks_it(tmp_path, server, env, proxy):
    assert proxy_for(_target(tmp_path, {"server": server}), env) == proxy


def test_socks_proxies_are_refused_clearly(tmp_path):
    with pytest.raises(UsageError, match="http and https proxies, not socks5"):
        _target(tmp_path, {"server": "https://x:6443", "proxy-url": "socks5://p:1080"})
    with pytest.raises(UsageError, match="HTTPS_PROXY socks5://p:1080"):
        proxy_for(_target(tmp_path, {"server": "https://x:6443"}), {"HTTPS_PROXY": "socks5://p:1080"})


def _plugin(tmp_path: Path, body: str) -> Path:
    """An exec plugin (sh) that logs each call to ``calls`` and runs ``body`` (N: the call's number)."""
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        f"#!/bin/sh\necho call >> {tmp_path}/calls\nN=$(wc -l < {tmp_path}/calls)\n"
        f'echo "$KUBERNETES_EXEC_INFO" > {tmp_path}/info\n{body}\n'
    )
    plugin.chmod(0o755)
    return plugin


def _credential(token: str, expires: str = "") -> str:
    stamp = f',\\"expirationTimestamp\\":\\"{expires}\\"' if expires else ""
    return (
        'echo "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",'
        f'\\"status\\":{{\\"token\\":\\"{token}\\"{stamp}}}}}"'
    )


def test_interactive_mode_is_parsed_and_checked(tmp_path):
    user = {"exec": {"command": "x", "interactiveMode": "Always"}}
    plugin = _target(tmp_path, {"server": "https://x"}, user).exec_plugin
    assert plugin.interactive_mode == "Always"
    with pytest.raises(CouldNotRun, match="needs a terminal"):
        interactive(plugin, terminal=False)
    assert interactive(plugin, terminal=True)
    never = _target(tmp_path, {"server": "https://x"}, {"exec": {"command": "x", "interactiveMode": "Never"}})
    assert not interactive(never.exec_plugin, terminal=True)
    with pytest.raises(UsageError, match="interactiveMode 'Sometimes'"):
        _target(tmp_path, {"server": "https://x"}, {"exec": {"command": "x", "interactiveMode": "Sometimes"}})


@pytest.mark.processes
async def test_a_plugin_without_a_terminal_is_told_so_and_speaks_to_stderr(tmp_path, capfd):
    plugin = _plugin(tmp_path, "echo 'open https://login.example/device' >&2\n" + _credential("tok"))
    target = _target(tmp_path, {"server": "https://x"}, {"exec": {"command": str(plugin)}})
    result = await run_exec_plugin(target.exec_plugin, terminal=False)
    assert result.token == "tok"
    assert json.loads((tmp_path / "info").read_text())["spec"]["interactive"] is False
    assert "open https://login.example/device" in capfd.readouterr().err


class _Api:
    """A local HTTP server that accepts the bearer tokens in ``good`` and records what it saw."""

    def __init__(self, good: set[str]) -> None:
        self.good = good
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        if auth.removeprefix("Bearer ") not in self.good:
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        return web.json_response({"gitVersion": "v1.36.3"})


@pytest.fixture
async def api():
    state = _Api(set())
    app = web.Application()
    app.router.add_get("/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.processes
async def test_an_expiring_exec_credential_is_fetched_again(tmp_path, api):
    state, server = api
    state.good = {"t1", "t2", "t3"}
    stamp = '$(date -u -d "+2 seconds" +%Y-%m-%dT%H:%M:%SZ)'
    plugin = _plugin(tmp_path, _credential("t$N", stamp))
    target = _target(tmp_path, {"server": server}, {"exec": {"command": str(plugin)}})
    async with connect(target) as kube:
        await asyncio.sleep(2.2)  # past the renewal point (half the remaining life, at most 5 s before)
        async with kube.session.get(f"{server}/api/v1/namespaces/x/pods/p:1/proxy/v1/health", headers={}) as r:
            assert r.status == 200
        assert kube.credentials.fetches == 2 and kube.target.token == "t2"
    assert state.seen == ["Bearer t1", "Bearer t2"]


@pytest.mark.processes
async def test_a_refused_exec_credential_is_fetched_once_more_and_the_request_retried(tmp_path, api):
    state, server = api
    state.good = {"good"}
    plugin = _plugin(tmp_path, f'if [ "$N" = 1 ]; then {_credential("revoked")}; else {_credential("good")}; fi')
    target = _target(tmp_path, {"server": server}, {"exec": {"command": str(plugin)}})
    async with connect(target) as kube:
        # a pod-proxy call sets an Authorization of its own: the connection's credentials replace it
        async with kube.session.get(f"{server}/api/v1/x", headers={"Authorization": ""}) as r:
            assert r.status == 200
        assert kube.credentials.fetches == 2
    assert state.seen == ["Bearer revoked", "Bearer good", "Bearer good"]


@pytest.mark.processes
async def test_credentials_refused_twice_are_refused_without_a_storm(tmp_path, api):
    state, server = api
    plugin = _plugin(tmp_path, _credential("never-good"))
    target = _target(tmp_path, {"server": server}, {"exec": {"command": str(plugin)}})
    with pytest.raises(NoPermission, match="401 Unauthorized"):
        async with connect(target):
            pass
    assert len((tmp_path / "calls").read_text().splitlines()) == 2
    assert len(state.seen) == 2


@pytest.mark.processes
async def test_one_process_reuses_a_plugin_credential_while_it_is_valid(tmp_path, api):
    state, server = api
    state.good = {"t1", "t2"}
    plugin = _plugin(tmp_path, _credential("t$N"))  # no expiry: valid for the process
    target = _target(tmp_path, {"server": server}, {"exec": {"command": str(plugin)}})
    for _ in range(2):  # a run connects more than once; a plugin that asks the user asks once
        async with connect(target):
            pass
    assert state.seen == ["Bearer t1", "Bearer t1"]
