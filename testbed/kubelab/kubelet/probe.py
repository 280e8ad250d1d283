"""The lab kubelet's container probes: httpGet, tcpSocket and exec, with the probe's timing
(initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, failureThreshold).

httpGet and tcpSocket go to the pod's IP (its node's address: every lab pod shares its node's
network) from the kubelet's namespace, over the lab's network, as a kubelet probes a pod IP;
exec runs the command in the container (``runc exec``).  Every attempt is bounded by its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp


def _port(value: Any, ports: Mapping[str, int]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    return int(ports[str(value)])


async def attempt(probe: Mapping[str, Any], *, host: str, ports: Mapping[str, int], container_id: str) -> bool:
    """One probe: True when it succeeds within its timeout."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            target = str(get.get("host") or host)
            target = f"[{target}]" if ":" in target else target
            url = f"{scheme}://{target}:{_port(get['port'], ports)}{get.get('path', '/')}"
            headers = {str(h["name"]): str(h["value"]) for h in get.get("httpHeaders") or ()}
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE  # as the kubelet: an HTTPS probe does not verify
            connector = aiohttp.TCPConnector(ssl=insecure if scheme == "https" else False)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
                ) as response:
                    return 200 <= response.status < 400
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"]
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(str(sock.get("host") or host), _port(sock["port"], ports)), timeout
            )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if "exec" in probe:
            command = [str(part) for part in probe["exec"].get("command") or ()]
            proc = await asyncio.create_subprocess_exec(
                "runc",
                "exec",
                container_id,
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return False
    except (OSError, TimeoutError, aiohttp.ClientError, KeyError, ValueError):
        return False
    return False  # a probe of a kind the lab kubelet does not know (grpc) never succeeds


async def run(
    probe: Mapping[str, Any],
    *,
    host: str,
    ports: Mapping[str, int],
    container_id: str,
    report: Callable[[bool], Awaitable[None]],
    initial: bool = False,
) -> None:
    """Probe forever (the caller cancels): ``report(result)`` each time the result flips from
    ``initial`` (readiness: False, a container starts unready; liveness: True), after
    successThreshold successes or failureThreshold failures in a row."""
    period = max(1.0, float(probe.get("periodSeconds", 10)))
    successes_needed = max(1, int(probe.get("successThreshold", 1)))
    failures_needed = max(1, int(probe.get("failureThreshold", 3)))
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    ready = initial
    successes = failures = 0
    while True:
        ok = await attempt(probe, host=host, ports=ports, container_id=container_id)
        successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
        if (not ready and successes >= successes_needed) or (ready and failures >= failures_needed):
            ready = not ready
            await report(ready)
        await asyncio.sleep(period)
