"""Where the Kubernetes API is and how to authenticate: kubeconfig or in-cluster credentials.

Precedence (as kubectl): ``--kubeconfig FILE``, else ``KUBECONFIG`` (a ``:``-separated list,
merged, first occurrence wins), else ``~/.kube/config``, else the in-cluster ServiceAccount when
running in a pod.  ``--context`` picks a context, else the current-context.

Supported user credentials: token, tokenFile, client-certificate(-data)/client-key(-data),
username/password, and exec plugins (client.authentication.k8s.io ExecCredential, bounded in
time, run by bench.kube.exec_plugin; e.g. ``talosctl``/``omnictl``/``kubectl oidc-login``).
Legacy auth-provider plugins (removed from kubectl in 1.26) are refused with a clear message.
The proxy is kubectl's too (:func:`proxy_for`): the cluster's ``proxy-url``, else
``HTTPS_PROXY``/``NO_PROXY``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from talbench.bench.errors import CouldNotRun, UsageError

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
PROXY_SCHEMES = ("http", "https")


class KubeConfigError(UsageError):
    """A kubeconfig that cannot be used (missing context, malformed file)."""


@dataclass(frozen=True)
class ExecPlugin:
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    base_dir: Path = Path(".")
    interactive_mode: str = "IfAvailable"  # Never, IfAvailable, Always (client-go's)


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
    proxy_url: str | None = None  # the cluster's proxy-url: beats HTTPS_PROXY and NO_PROXY
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
            interactive_mode=str(spec.get("interactiveMode") or "IfAvailable"),
        )
        if not exec_plugin.command:
            raise KubeConfigError(f"kubeconfig: user {user_name!r}: exec plugin without a command")
        if exec_plugin.interactive_mode not in INTERACTIVE_MODES:
            raise KubeConfigError(
                f"kubeconfig: user {user_name!r}: exec interactiveMode {exec_plugin.interactive_mode!r} "
                f"is not one of {', '.join(INTERACTIVE_MODES)}"
            )
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
        proxy_url=_proxy_url(str(cluster["proxy-url"]), f"cluster {cluster_name!r} proxy-url")
        if cluster.get("proxy-url")
        else None,
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
        load_client_certificate(context, target.client_cert, target.client_key)
    return context


def load_client_certificate(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Present this certificate on the context's next connections (an exec plugin's new one)."""
    # load_cert_chain reads files only: a private directory that lives for the call
    with tempfile.TemporaryDirectory(prefix="talbench-kube-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            path.touch(mode=0o600)
            path.write_bytes(data)
        context.load_cert_chain(cert, key)


def _proxy_url(url: str, what: str) -> str:
    """``url`` as a proxy URL talbench can use (no scheme: http, as Go assumes)."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in PROXY_SCHEMES:
        raise KubeConfigError(
            f"{what} {url}: talbench speaks to http and https proxies, not {scheme} (kubectl also does socks5)"
        )
    if not urlsplit(url).hostname:
        raise KubeConfigError(f"{what} {url}: no proxy host")
    return url


def _no_proxy_covers(host: str, port: int, no_proxy: str) -> bool:
    """Go's NO_PROXY rules: ``*``; an IP or CIDR; a name covering itself and its subdomains
    (``.name``: only subdomains); each optionally with ``:port``."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            network = None
        if network is not None:
            if ip is not None and ip in network:
                return True
            continue
        name, sep, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if sep and entry_port != str(port):
            continue
        name = name.rstrip(".")
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith(f".{name}"):
            return True
    return False


def proxy_for(target: ApiTarget, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy for ``target``'s API server, as kubectl picks it: the cluster's ``proxy-url``,
    else ``HTTPS_PROXY`` (``HTTP_PROXY`` for an http server) unless ``NO_PROXY`` covers the host;
    never from the environment for localhost or a loopback address (Go's rule)."""
    if target.proxy_url:
        return target.proxy_url
    env = os.environ if env is None else env
    url = urlsplit(target.server)
    host = (url.hostname or "").lower()
    port = url.port or (443 if url.scheme == "https" else 80)
    names = ("HTTPS_PROXY", "https_proxy") if url.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    proxy = next((env[n] for n in names if env.get(n)), None)
    if not proxy or not host or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if _no_proxy_covers(host, port, env.get("NO_PROXY") or env.get("no_proxy") or ""):
        return None
    return _proxy_url(proxy, names[0])


def auth_header(target: ApiTarget) -> str | None:
    """The Authorization header value for ``target`` (None: client certificate or no auth).
    An exec plugin's token is the one last fetched (bench.kube.transport keeps it current)."""
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
