"""Push a run's figures to a Prometheus Pushgateway (text exposition format, one group per
scenario: ``PUT /metrics/job/talbench/scenario/<name>`` replaces the previous run's figures).

    talbench_check_value{check,metric,subject,unit}   observed value in base units (s, ratio, B, bit/s)
    talbench_check_status{check,metric,subject}       0 pass, 1 warn, 2 fail, 3 no_data, 4 invalid, 5 info
    talbench_run_blocking_verdicts                    verdicts that make the run fail
    talbench_run_timestamp_seconds                    when the run ended
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp

from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.model import Status, Verdict
from talbench.bench.units import Dimension

STATUS_CODE = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.NO_DATA: 3, Status.INVALID: 4, Status.INFO: 5}
UNIT = {
    Dimension.DURATION: "seconds",
    Dimension.RATIO: "ratio",
    Dimension.BYTES: "bytes",
    Dimension.BITRATE: "bits_per_second",
    Dimension.RATE: "per_second",
    Dimension.COUNT: "count",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{_label(value)}"' for key, value in labels.items()) + "}"


def exposition(run_id: str, verdicts: Sequence[Verdict], *, ended: float | None = None) -> str:
    """The text the Pushgateway receives (Prometheus text format 0.0.4)."""
    lines = [
        "# HELP talbench_check_value Observed value of a talbench check for one subject, in base units.",
        "# TYPE talbench_check_value gauge",
    ]
    for v in verdicts:
        if v.observed is not None and math.isfinite(v.observed):
            lines.append(
                f"talbench_check_value{_labels(check=v.check, metric=v.metric, subject=str(v.subject), unit=UNIT[v.dimension], run_id=run_id)} {v.observed!r}"
            )
    lines += [
        "# HELP talbench_check_status Verdict: 0 pass, 1 warn, 2 fail, 3 no_data, 4 invalid, 5 info.",
        "# TYPE talbench_check_status gauge",
    ]
    for v in verdicts:
        lines.append(
            f"talbench_check_status{_labels(check=v.check, metric=v.metric, subject=str(v.subject), run_id=run_id)} {STATUS_CODE[v.status]}"
        )
    blocking = sum(1 for v in verdicts if v.status.blocks)
    lines += [
        "# HELP talbench_run_blocking_verdicts Verdicts that make the run fail (fail, no_data, invalid).",
        "# TYPE talbench_run_blocking_verdicts gauge",
        f"talbench_run_blocking_verdicts{_labels(run_id=run_id)} {blocking}",
        "# HELP talbench_run_timestamp_seconds When the run ended.",
        "# TYPE talbench_run_timestamp_seconds gauge",
        f"talbench_run_timestamp_seconds{_labels(run_id=run_id)} {ended if ended is not None else time.time()!r}",
    ]
    return "\n".join(lines) + "\n"


async def push(
    url: str,
    scenario: str,
    run_id: str,
    verdicts: Sequence[Verdict],
    *,
    ended: float | None = None,
    timeout: float = 10.0,
) -> str:
    """PUT the run's figures to the Pushgateway at ``url``; returns the URL pushed to.  CouldNotRun
    (one line) when the gateway cannot be reached or refuses."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--pushgateway {url!r}: expected an http:// or https:// URL")
    target = f"{url.rstrip('/')}/metrics/job/talbench/scenario/{quote(scenario, safe='')}"
    body = exposition(run_id, verdicts, ended=ended)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(
                target,
                data=body.encode(),
                headers={"Content-Type": "text/plain; version=0.0.4"},
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
    return target
