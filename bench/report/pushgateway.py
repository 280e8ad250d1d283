"""Push a run's metrics (bench/report/metrics.py) to a Prometheus Pushgateway.

One group per scenario and cluster: ``PUT /metrics/job/talbench/scenario/<name>[/cluster/<name>]``
replaces the previous run's figures, so a scheduled run continues the series of the last one (a
subject that is gone is gone from the group too).  prometheus_client builds the body and the
grouping key's path (base64 for values it cannot put in a path); the request itself goes out with
aiohttp, bounded in time, and a failure is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client import push_to_gateway

from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.model import RunRecord
from talbench.bench.report.history import History
from talbench.bench.report.metrics import JOB, Grouping, cluster_of, registry_for


@dataclass(frozen=True)
class PushRequest:
    """What prometheus_client would send: the URL (grouping key included), headers and body."""

    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def push_request(
    url: str, record: RunRecord, *, cluster: str | None = None, history: History | None = None
) -> PushRequest:
    """The request for ``record`` (with ``history``, its regressions since the previous kept run);
    ``cluster`` (else the record's kubeconfig context) joins the grouping key.  UsageError for a
    URL that is not http(s)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--pushgateway {url!r}: expected an http:// or https:// URL")
    grouping = Grouping(record.scenario.name, cluster or cluster_of(record))
    captured: list[PushRequest] = []

    # prometheus_client's handler hook: given the request it would send (synchronously, with
    # urllib), keep it; push() sends it on aiohttp.
    def capture(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def record_it() -> None:
            captured.append(PushRequest(url, method, tuple(headers), data))

        return record_it

    push_to_gateway(url, job=JOB, registry=registry_for(record, history), grouping_key=grouping.key(), handler=capture)
    return captured[0]


async def push(
    url: str, record: RunRecord, *, cluster: str | None = None, timeout: float = 10.0, history: History | None = None
) -> str:
    """PUT the run's metrics to the Pushgateway at ``url``; returns the URL pushed to.  CouldNotRun
    (one line) when the gateway cannot be reached or refuses."""
    request = push_request(url, record, cluster=cluster, history=history)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                if answer.status >= 400:
                    text = (await answer.text()).strip().splitlines()
                    raise CouldNotRun(
                        f"the Pushgateway at {url} refused the push: HTTP {answer.status}"
                        + (f": {text[0]}" if text else "")
                    )
    except TimeoutError as exc:
        raise CouldNotRun(f"the Pushgateway at {url} did not answer within {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise CouldNotRun(
            f"cannot reach the Pushgateway at {url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return request.url
