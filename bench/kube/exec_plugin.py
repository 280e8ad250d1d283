"""client-go credential plugins (``users[].user.exec``): run one, bounded, and read its
ExecCredential.

The plugin talks to the user, not to talbench: its stderr is talbench's stderr (a login URL that
``kubectl oidc-login`` prints reaches the terminal) and, when its ``interactiveMode`` asks for it
and standard input is a terminal, so is its stdin.  Only its stdout (the ExecCredential) is read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime

from talbench.bench.errors import CouldNotRun
from talbench.bench.kube.config import ApiTarget, ExecPlugin

EXEC_TIMEOUT = 60.0  # a plugin that needs no one
INTERACTIVE_TIMEOUT = 300.0  # a plugin that may wait for the user (a login in a browser)
CACHE_MARGIN = 10.0  # seconds of validity a cached credential must still have to be reused


@dataclass(frozen=True)
class ExecResult:
    token: str | None
    client_cert: bytes | None
    client_key: bytes | None
    expires: float | None  # unix seconds


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


def interactive(plugin: ExecPlugin, terminal: bool) -> bool:
    """Whether the plugin gets the terminal (client-go's rules for ``interactiveMode``)."""
    if plugin.interactive_mode == "Never":
        return False
    if plugin.interactive_mode == "Always" and not terminal:
        raise CouldNotRun(
            f"kubeconfig exec plugin {plugin.command!r} needs a terminal (interactiveMode: Always) "
            "and standard input is not one",
            hint="run talbench from a terminal once, or use a kubeconfig with a token or certificate",
        )
    return terminal


async def run_exec_plugin(
    plugin: ExecPlugin, timeout: float | None = None, *, terminal: bool | None = None
) -> ExecResult:
    """Run a client-go credential plugin once (bounded) and parse its ExecCredential."""
    talk = interactive(plugin, _stdin_is_terminal() if terminal is None else terminal)
    limit = timeout if timeout is not None else (INTERACTIVE_TIMEOUT if talk else EXEC_TIMEOUT)
    env = dict(os.environ)
    env.update(plugin.env)
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": {"interactive": talk}}
    )
    command = plugin.command
    if "/" in command and not os.path.isabs(command):
        command = str(plugin.base_dir / command)
    try:
        proc = await asyncio.create_subprocess_exec(
            command,
            *plugin.args,
            env=env,
            stdin=None if talk else asyncio.subprocess.DEVNULL,  # None: talbench's own
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # talbench's own: what the plugin tells the user reaches the user
        )
    except OSError as exc:
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} cannot start: {exc.strerror}") from exc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError as exc:
        raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} gave no credentials within {limit:g}s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise CouldNotRun(
            f"kubeconfig exec plugin {plugin.command!r} failed (exit {proc.returncode}); its own message, if any, is above"
        )
    try:
        status = json.loads(out)["status"]
        if not isinstance(status, dict):
            raise TypeError("status")
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
        token=str(status["token"]) if status.get("token") else None,
        client_cert=str(cert).encode() if cert else None,
        client_key=str(key).encode() if key else None,
        expires=expires,
    )


def _key(plugin: ExecPlugin) -> tuple[object, ...]:
    return (
        plugin.command,
        plugin.args,
        tuple(sorted(plugin.env.items())),
        plugin.api_version,
        str(plugin.base_dir),
        plugin.interactive_mode,
    )


# What each plugin last gave, for the other connections of this process (as client-go caches
# them): a run connects more than once, and a plugin that asks the user should ask once.
_LAST: dict[tuple[object, ...], ExecResult] = {}


async def exec_credentials(target: ApiTarget, *, fresh: bool = False) -> tuple[ApiTarget, float | None]:
    """``target`` with its exec plugin's credentials (its token or client certificate) and when
    they expire (unix seconds; None: no expiry given).  The plugin runs when ``fresh`` or when
    this process has none of its credentials valid for CACHE_MARGIN more seconds."""
    plugin = target.exec_plugin
    if plugin is None:
        return target, None
    result = _LAST.get(_key(plugin))
    if fresh or result is None or (result.expires is not None and result.expires < time.time() + CACHE_MARGIN):
        result = await run_exec_plugin(plugin)
        if not result.token and not (result.client_cert and result.client_key):
            raise CouldNotRun(f"kubeconfig exec plugin {plugin.command!r} returned neither a token nor a certificate")
        _LAST[_key(plugin)] = result
    if result.token:
        return replace(target, token=result.token), result.expires
    return replace(target, client_cert=result.client_cert, client_key=result.client_key), result.expires


async def with_exec_credentials(target: ApiTarget) -> ApiTarget:
    """``target`` with its exec plugin run once."""
    return (await exec_credentials(target))[0]
