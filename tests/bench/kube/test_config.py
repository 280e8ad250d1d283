"""Kubeconfig and in-cluster credentials: kubectl's precedence, contexts, every credential kind."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.kube.config import (
    auth_header,
    in_cluster_target,
    load_kubeconfig,
    resolve_target,
    run_exec_plugin,
    with_exec_credentials,
)


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


async def test_a_failing_exec_plugin_could_not_run(tmp_path):
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
    with pytest.raises(CouldNotRun, match=r"failed \(exit 1\): login expired"):
        await run_exec_plugin(target.exec_plugin)
