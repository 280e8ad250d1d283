"""kubeprism probe: does KubePrism answer on this node?

KubePrism is Talos' node-local load balancer for the Kubernetes API, listening on
``127.0.0.1:7445`` on every node (the agent runs with the host's network).  The reference
architecture asks for it on all nodes.  Each attempt connects over TCP, completes a TLS handshake
(the API server's certificate is not verified: the question is whether the path answers, not who
signed it) and sends ``GET /version``; any HTTP status line counts as an answer (401/403 too: an
API server answered through KubePrism).  The raw attempts are returned; the coordinator judges.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration

SCHEMA_VERSION = 1
HOST = "127.0.0.1"  # KubePrism listens on the node's loopback only
DEFAULT_PORT = 7445


class KubePrismSettings(Params):
    """The scenario's ``probes.kubeprism`` block; the agent's job takes the same fields."""

    port: int = param(DEFAULT_PORT, ge=1, le=65535, help="KubePrism's port on the node's loopback")
    attempts: int = param(3, ge=1, le=20, help="connections tried, one after the other")
    timeout: float = param(3.0, ge=0.1, le=10.0, unit=SECONDS, help="per attempt: connect, TLS handshake and answer")
    interval: float = param(0.5, ge=0.0, le=10.0, unit=SECONDS, help="pause between attempts")


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reachability, not identity: see the module docstring
    return context


async def attempt(port: int, timeout: float) -> dict[str, Any]:
    """One connect + TLS handshake + GET /version, bounded by ``timeout``."""
    started = time.monotonic()
    result: dict[str, Any] = {"connected": False, "tls": False, "http_status": None, "error": None}
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, port)
            result["connected"] = True
            await writer.start_tls(_tls_context(), server_hostname="localhost")
            result["tls"] = True
            writer.write(
                b"GET /version HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            line = (await reader.readline()).decode("latin-1").split()
            if len(line) >= 2 and line[0].startswith("HTTP/") and line[1].isdigit():
                result["http_status"] = int(line[1])
            else:
                result["error"] = "no HTTP answer"
    except TimeoutError:
        result["error"] = f"no answer within {timeout:g}s"
    except (OSError, ssl.SSLError, ConnectionError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except (TimeoutError, OSError, ssl.SSLError):
                pass
    result["elapsed_s"] = time.monotonic() - started
    return result


def time_limit(params: KubePrismSettings) -> float:
    return params.attempts * (params.timeout + 1.0 + params.interval) + 5.0


async def measure(params: KubePrismSettings, ctx: ProbeContext) -> dict[str, Any]:
    attempts: list[dict[str, Any]] = []
    for index in range(params.attempts):
        if index:
            await asyncio.sleep(params.interval)
        attempts.append(await attempt(params.port, params.timeout))
    return {
        "schema": SCHEMA_VERSION,
        "host": HOST,
        "port": params.port,
        "attempts": attempts,
        "answered": sum(1 for a in attempts if a["http_status"] is not None),
    }


JOB: AgentJob[KubePrismSettings] = AgentJob("kubeprism", KubePrismSettings, measure, time_limit)

PROBE = ProbeDeclaration(
    name="kubeprism",
    summary="KubePrism (127.0.0.1:7445) answers on every node: TCP, TLS and GET /version",
    settings=KubePrismSettings,
    jobs=(JOB,),
)
