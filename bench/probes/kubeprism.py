"""kubeprism probe, coordinator side: every agent checks KubePrism on its own node's loopback
(127.0.0.1:7445, agents/probes/kubeprism.py); the metric is the share of attempts answered."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.model import Measurement, Node, Observation, ResultKey, Subject, SubjectKind
from talbench.bench.metric import Metric, Progress
from talbench.bench.units import Dimension, UnitError, parse_duration

PROBE = "kubeprism"


@dataclass(frozen=True)
class KubePrismSettings:
    port: int = 7445
    attempts: int = 3
    timeout: float = 3.0
    interval: float = 0.5

    def as_params(self) -> dict[str, Any]:
        return {"port": self.port, "attempts": self.attempts, "timeout_s": self.timeout, "interval_s": self.interval}

    @property
    def deadline(self) -> float:
        return self.attempts * (self.timeout + 1.0 + self.interval) + 15.0


def parse_settings(raw: Mapping[str, Any], *, quick: bool) -> KubePrismSettings:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("port", "attempts"):
            low, high = (1, 65535) if key == "port" else (1, 20)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ScenarioError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
            values[key] = value
        elif key in ("timeout", "interval"):
            try:
                seconds = parse_duration(value)
            except UnitError as exc:
                raise ScenarioError(f"{key}: {exc}") from exc
            if not (0.1 if key == "timeout" else 0.0) <= seconds <= 10.0:
                raise ScenarioError(f"{key} must lie between {0.1 if key == 'timeout' else 0:g}s and 10s, not {value}")
            values[key] = seconds
        else:
            raise ScenarioError(f"unknown setting {key!r} (known: attempts, interval, port, timeout)")
    settings = KubePrismSettings(**values)
    if quick:
        settings = replace(settings, interval=min(settings.interval, 0.1), timeout=min(settings.timeout, 1.0))
    return settings


def observe_answered(subject: Subject, measurements: Sequence[Measurement], nodes: Sequence[Node]) -> Observation:
    data = measurements[0].data
    attempts = list(data.get("attempts") or ())
    if not attempts:
        return Observation(None, invalid="no attempt made")
    answered = [a for a in attempts if a.get("http_status") is not None]
    where = f"{data.get('host', '127.0.0.1')}:{data.get('port', 7445)}"
    if answered:
        median_ms = statistics.median(a.get("elapsed_s", 0.0) for a in answered) * 1e3
        detail = f"{len(answered)}/{len(attempts)} attempts on {where} answered (HTTP {answered[-1]['http_status']}, median {median_ms:.1f} ms)"
    else:
        detail = f"0/{len(attempts)} attempts on {where} answered: {attempts[-1].get('error') or 'no answer'}"
    return Observation(len(answered) / len(attempts), samples=len(attempts), detail=detail)


class KubePrismDriver:
    name = PROBE

    def settings(self, raw: Mapping[str, Any], *, quick: bool) -> KubePrismSettings:
        return parse_settings(raw, quick=quick)

    async def run(self, keys: frozenset[ResultKey], fleet: Fleet, settings: KubePrismSettings, progress: Progress) -> list[Measurement]:
        nodes = sorted(key.node for key in keys if key.node in fleet.agents)
        done = 0
        progress.update(PROBE, done=0, total=len(nodes), note=f"127.0.0.1:{settings.port} on every node")

        async def one(node: str) -> Measurement:
            nonlocal done
            outcome = await fleet.agents[node].run_job(PROBE, settings.as_params(), fleet.run_id, deadline=settings.deadline)
            done += 1
            progress.update(PROBE, done=done, total=len(nodes), note=f"{node} done")
            return Measurement(ResultKey(PROBE, node), outcome.ok, data=dict(outcome.result), error=outcome.error,
                               started=outcome.started, ended=outcome.ended, resources=dict(outcome.resources),
                               error_kind=outcome.error_kind)

        return list(await asyncio.gather(*(one(node) for node in nodes)))

    def metrics(self) -> Sequence[Metric]:
        return (
            Metric("kubeprism.answered", PROBE, SubjectKind.NODE, Dimension.RATIO, False, observe_answered,
                   "share of attempts KubePrism (127.0.0.1:7445) answered on the node"),
        )


DRIVER = KubePrismDriver()
