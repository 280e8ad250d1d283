"""Round-trip time from one etcd member's node to its peers, over the peers' own listeners:
HTTP GET ``<peer URL>/raft/probing`` (the endpoint etcd's prober uses) on one keep-alive
connection per peer, ``count`` times ``interval`` apart, after two warm-up requests.

etcd's own metric (etcd_network_peer_round_trip_time_seconds) is a smoothed RTT that starts at
zero and gains 1/8 per probe (one every few seconds, reported every 30 s): on a freshly started
scratch cluster it reads a fraction of the real RTT for the first minute.  These raw samples do
not have that bias.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

WARMUP = 2
REQUEST_TIMEOUT = 2.0
KEPT_ERRORS = 3


async def _one_peer(url: str, count: int, interval: float) -> dict[str, Any]:
    samples: list[int] = []
    errors: list[str] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    ) as session:
        for index in range(WARMUP + count):
            started = time.perf_counter_ns()
            try:
                async with session.get(f"{url}/raft/probing") as response:
                    await response.read()
                    ok = response.status == 200
                    status: int | str = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                ok, status = False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            elapsed = time.perf_counter_ns() - started
            if index >= WARMUP:
                if ok:
                    samples.append(elapsed)
                else:
                    failures += 1
                    if len(errors) < KEPT_ERRORS:
                        errors.append(str(status))
            await asyncio.sleep(interval)
    return {"url": url, "samples_ns": samples, "failed": failures, "errors": errors}


async def probe_peers(peers: Mapping[str, str], count: int, interval: float) -> dict[str, Any]:
    """name -> {"url", "samples_ns", "failed", "errors"}; all peers at once."""
    names = sorted(peers)
    results = await asyncio.gather(*(_one_peer(peers[name], count, interval) for name in names))
    return dict(zip(names, results, strict=True))
