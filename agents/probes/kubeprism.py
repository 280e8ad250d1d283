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
import math
import ssl
import time
from dataclasses import dataclass
from typing import Any, Mapping

from talbench.agents.probe import ProbeContext, ProbeParamError

SCHEMA_VERSION = 1
HOST = "127.0.0.1"  # KubePrism listens on the node's loopback only
DEFAULT_PORT = 7445


@dataclass(frozen=True)
class KubePrismParams:
    port: int = DEFAULT_PORT
    attempts: int = 3
    timeout: float = 3.0  # seconds per attempt (connect, handshake, answer)
    interval: float = 0.5  # seconds between attempts


def parse_params(raw: Mapping[str, Any]) -> KubePrismParams:
    known = {"port", "attempts", "timeout_s", "interval_s"}
    unknown = set(raw) - known
    if unknown:
        raise ProbeParamError(f"unknown kubeprism parameter(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    port = raw.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ProbeParamError(f"port must be a number from 1 to 65535, not {port!r}")
    attempts = raw.get("attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise ProbeParamError(f"attempts must be a whole number from 1 to 20, not {attempts!r}")
    return KubePrismParams(port, attempts, _seconds(raw, "timeout_s", 3.0, 0.1, 30.0), _seconds(raw, "interval_s", 0.5, 0.0, 10.0))


def _seconds(raw: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ProbeParamError(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


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
            writer.write(b"GET /version HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
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


class KubePrismProbe:
    name = "kubeprism"

    def parse(self, params: Mapping[str, Any]) -> KubePrismParams:
        return parse_params(params)

    def time_limit(self, params: KubePrismParams) -> float:
        return params.attempts * (params.timeout + 1.0 + params.interval) + 5.0

    async def run(self, params: KubePrismParams, ctx: ProbeContext) -> dict[str, Any]:
        attempts = []
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
