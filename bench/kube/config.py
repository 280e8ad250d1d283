"""Where the Kubernetes API is and how to authenticate: kubeconfig or in-cluster credentials.

Precedence (as kubectl): ``--kubeconfig FILE``, else ``KUBECONFIG`` (a ``:``-separated list,
merged, first occurrence wins), else ``~/.kube/config``, else the in-cluster ServiceAccount when
running in a pod.  ``--context`` picks a context, else the current-context.

Supported user credentials: token, tokenFile, client-certificate(-data)/client-key(-data),
username/password, and exec plugins (client.authentication.k8s.io ExecCredential, bounded in
time; e.g. ``talosctl``/``omnictl``/``kubectl oidc-login``).  Legacy auth-provider plugins
(removed from kubectl in 1.26) are refused with a clear message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from talbench.bench.errors import CouldNotRun, UsageError

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT = 60.0


class KubeConfigError(UsageError):
    """A kubeconfig that cannot be used (missing context, malformed file)."""


@dataclass(frozen=True)
class ExecPlugin:
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    base_dir: Path = Path(".")


@dataclass(frozen=True)
class ApiTarget:
    """One API server and the credentials for it (loaded once per run)."""

    server: str
    context: str
    in_cluster: bool
    ca_data: bytes | None = None  # PEM; None: the system trust store
    insecure: bool = False
    tls_server_name: str | None = None
    client_cert: bytes | None = None  # PEM
    client_key: bytes | None = None  # PEM
    token: str | None = None
    token_file: Path | None = None  # re-read on every use (projected tokens rotate)
    basic: tuple[str, str] | None = None
    exec_plugin: ExecPlugin | None = None
    namespace: str | None = None  # the context's default namespace
    source: str = ""  # where this came from, for messages

    @property
    def uses_tls(self) -> bool:
        return self.server.startswith("https://")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KubeConfigError(f"kubeconfig: cannot read {what} {path}: {exc.strerror}") from exc


def _kubeconfig_paths(explicit: str | None, env: Mapping[str, str]) -> list[Path]:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise KubeConfigError(f"--kubeconfig {explicit}: no such file")
        return [path]
    if env.get("KUBECONFIG"):
        paths = [Path(p).expanduser() for p in env["KUBECONFIG"].split(os.pathsep) if p]
        return [p for p in paths if p.is_file()]
    default = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    return [default] if default.is_file() else []


def _merge(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merged kubeconfig and, for every named entry, the file it came from (relative paths)."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    origin: dict[str, Path] = {}
    for path in paths:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeConfigError(f"kubeconfig {path}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(raw, dict):
            raise KubeConfigError(f"kubeconfig {path}: not a kubeconfig (a mapping is expected)")
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in raw.get(section) or ():
                if isinstance(entry, dict) and entry.get("name") and entry["name"] not in merged[section]:
                    merged[section][entry["name"]] = entry.get(inner) or {}
                    origin[f"{section}/{entry['name']}"] = path.parent
        if merged["current-context"] is None and raw.get("current-context"):
            merged["current-context"] = raw["current-context"]
    return merged, origin


def _file_or_data(entry: Mapping[str, Any], key: str, base: Path, what: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"])
        except (ValueError, TypeError) as exc:
            raise KubeConfigError(f"kubeconfig: {key}-data is not base64") from exc
    if entry.get(key):
        return _read((base / str(entry[key])).expanduser(), what)
    return None


def load_kubeconfig(
    kubeconfig: str | None = None, context: str | None = None, env: Mapping[str, str] | None = None
) -> ApiTarget:
    """The API target of ``context`` (or the current one) from the kubeconfig files that apply."""
    env = os.environ if env is None else env
    paths = _kubeconfig_paths(kubeconfig, env)
    if not paths:
        raise CouldNotRun(
            "no kubeconfig found (--kubeconfig, KUBECONFIG, ~/.kube/config) and not running inside a cluster",
            hint="pass --kubeconfig FILE (e.g. from 'talosctl kubeconfig') or use --target lab",
        )
    config, origin = _merge(paths)
    name = context or config["current-context"]
    if not name:
        raise KubeConfigError(f"kubeconfig {paths[0]}: no current-context; pass --context")
    if name not in config["contexts"]:
        known = ", ".join(sorted(config["contexts"])) or "none"
        raise KubeConfigError(f"kubeconfig: no context {name!r} (contexts: {known})")
    ctx = config["contexts"][name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in config["clusters"]:
        raise KubeConfigError(f"kubeconfig: context {name!r} names cluster {cluster_name!r}, which is not defined")
    cluster = config["clusters"][cluster_name]
    user = config["users"].get(user_name) or {}
    if user_name and user_name not in config["users"]:
        raise KubeConfigError(f"kubeconfig: context {name!r} names user {user_name!r}, which is not defined")
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"kubeconfig: cluster {cluster_name!r} has no usable server URL ({server or 'none'})")
    cbase = origin.get(f"clusters/{cluster_name}", Path("."))
    ubase = origin.get(f"users/{user_name}", Path("."))
    if user.get("auth-provider"):
        raise KubeConfigError(
            f"kubeconfig: user {user_name!r} uses the legacy auth-provider "
            f"{user['auth-provider'].get('name', '?')!r}; use an exec plugin instead"
        )
    exec_plugin = None
    if user.get("exec"):
        spec = user["exec"]
        exec_plugin = ExecPlugin(
            command=str(spec.get("command") or ""),
            args=tuple(str(a) for a in spec.get("args") or ()),
            env={
                str(e["name"]): str(e.get("value", ""))
                for e in spec.get("env") or ()
                if isinstance(e, dict) and "name" in e
            },
            api_version=str(spec.get("apiVersion") or "client.authentication.k8s.io/v1"),
            base_dir=ubase,
        )
        if not exec_plugin.command:
            raise KubeConfigError(f"kubeconfig: user {user_name!r}: exec plugin without a command")
    token = user.get("token")
    token_file = Path(user["tokenFile"]).expanduser() if user.get("tokenFile") else None
    if token_file is not None and not token_file.is_absolute():
        token_file = ubase / token_file
    basic = (str(user["username"]), str(user["password"])) if user.get("username") and user.get("password") else None
    return ApiTarget(
        server=server,
        context=name,
        in_cluster=False,
        ca_data=_file_or_data(cluster, "certificate-authority", cbase, "certificate authority"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        client_cert=_file_or_data(user, "client-certificate", ubase, "client certificate"),
        client_key=_file_or_data(user, "client-key", ubase, "client key"),
        token=str(token) if token else None,
        token_file=token_file,
        basic=basic,
        exec_plugin=exec_plugin,
        namespace=ctx.get("namespace"),
        source=str(paths[0]) if len(paths) == 1 else os.pathsep.join(map(str, paths)),
    )


def in_cluster_target(env: Mapping[str, str] | None = None, directory: Path = IN_CLUSTER_DIR) -> ApiTarget | None:
    """The in-cluster target when running in a pod with a ServiceAccount token, else None."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token = directory / "token"
    if not host or not token.is_file():
        return None
    host = f"[{host}]" if ":" in host else host
    ca = directory / "ca.crt"
    ns = directory / "namespace"
    return ApiTarget(
        server=f"https://{host}:{port}",
        context="in-cluster",
        in_cluster=True,
        ca_data=ca.read_bytes() if ca.is_file() else None,
        token_file=token,
        namespace=ns.read_text().strip() if ns.is_file() else None,
        source=str(directory),
    )


def resolve_target(
    kubeconfig: str | None = None, context: str | None = None, env: Mapping[str, str] | None = None
) -> ApiTarget:
    """kubectl's precedence, then in-cluster credentials when no kubeconfig exists."""
    env = os.environ if env is None else env
    if kubeconfig or context or _kubeconfig_paths(None, env):
        return load_kubeconfig(kubeconfig, context, env)
    found = in_cluster_target(env)
    if found is not None:
        return found
    return load_kubeconfig(None, None, env)  # raises the "no kubeconfig" error


def ssl_context(target: ApiTarget) -> ssl.SSLContext | bool:
    """The TLS context for ``target`` (False for plain http)."""
    if not target.uses_tls:
        return False
    context = ssl.create_default_context(cadata=target.ca_data.decode() if target.ca_data else None)
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if target.client_cert and target.client_key:
        # load_cert_chain reads files only: a private directory that lives for the call
        with tempfile.TemporaryDirectory(prefix="talbench-kube-") as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            for path, data in ((cert, target.client_cert), (key, target.client_key)):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True)
class ExecResult:
    token: str | None
    client_cert: bytes | None
    client_key: bytes | None
    expires: float | None  # unix seconds


async def run_exec_plugin(plugin: ExecPlugin, timeout: float = EXEC_TIMEOUT) -> ExecResult:
    """Run a client-go credential plugin once (bounded) and parse its ExecCredential."""
    env = dict(os.environ)
    env.update(plugin.env)
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    command = plugin.command
    if "/" in command and not os.path.isabs(command):
        command = str(plugin.base_dir / command)
    try:
        proc = await asyncio.create_subprocess_exec(
            command,
            *plugin.args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} cannot start: {exc.strerror}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} gave no credentials within {timeout:g}s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        first = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} failed (exit {proc.returncode}): {first}")
    try:
        status = json.loads(out)["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} printed no ExecCredential") from exc
    expires = None
    if status.get("expirationTimestamp"):
        try:
            expires = datetime.fromisoformat(str(status["expirationTimestamp"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            expires = None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    return ExecResult(
        token=status.get("token"),
        client_cert=cert.encode() if cert else None,
        client_key=key.encode() if key else None,
        expires=expires,
    )


async def with_exec_credentials(target: ApiTarget) -> ApiTarget:
    """``target`` with its exec plugin run once (its token or client certificate filled in)."""
    if target.exec_plugin is None:
        return target
    result = await run_exec_plugin(target.exec_plugin)
    if result.token:
        return replace(target, token=result.token)
    if result.client_cert and result.client_key:
        return replace(target, client_cert=result.client_cert, client_key=result.client_key)
    raise CouldNotRun(
        f"kubeconfig exec plugin {target.exec_plugin.command!r} returned neither a token nor a certificate"
    )


def auth_header(target: ApiTarget) -> str | None:
    """The Authorization header value for ``target`` (None: client certificate or no auth).
    Exec-plugin tokens are fetched once per run (with_exec_credentials): a run is shorter than
    their lifetime."""
    if target.token_file is not None:
        try:
            return f"Bearer {target.token_file.read_text().strip()}"
        except OSError as exc:
            raise CouldNotRun(f"cannot read the API token {target.token_file}: {exc.strerror}") from exc
    if target.token:
        return f"Bearer {target.token}"
    if target.basic:
        user, password = target.basic
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def describe(target: ApiTarget) -> str:
    return f"{target.server} (context {target.context})"
