"""One run, start to finish: deploy agents, plan, execute, judge.  Returns a RunRecord; writes
nothing and prints nothing (the CLI does, in the ``finished`` callback that run() calls with the
record before the agents are torn down, so that a teardown that hangs costs no results)."""

from __future__ import annotations

import platform
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from talbench.agents import wire
from talbench.agents.params import Params
from talbench.bench import retry
from talbench.bench.dispatch.base import Dispatcher, Fleet, LeftBehind
from talbench.bench.errors import CouldNotRun, UsageError
from talbench.bench.execute import execute
from talbench.bench.judge import judge
from talbench.bench.metric import Metric, Progress
from talbench.bench.model import Check, Measurement, Node, ResultKey, RunRecord, Scenario, Verdict
from talbench.bench.plan import Plan, make_plan
from talbench.bench.probes.base import ProbeDriver


def tool_version() -> str:
    try:
        return version("talbench")
    except PackageNotFoundError:
        return "0+unknown"


def new_run_id(now: float | None = None) -> str:
    """``20261121-153000-a1b2``: sortable, unique enough, and a run id as ``agents.wire`` defines
    it (``valid_run_id``: 1 to 54 characters of a-z, 0-9 and '-', a letter or digit at both ends),
    so it is a Kubernetes label value and, after ``talbench-``, a namespace name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def check_run_id(value: str) -> str:
    """A run id given from outside (``talbench clean --run-id``): returned when valid, UsageError
    otherwise (the agent refuses the same ids)."""
    if not wire.valid_run_id(value):
        raise UsageError(
            f"run id {value!r}: expected 1 to 54 characters of a-z, 0-9 and '-', starting and ending with a letter "
            "or digit (as 'talbench run' prints it)"
        )
    return value


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    scenario: Scenario
    checks: tuple[Check, ...]
    settings: Mapping[str, Params]  # probe name -> its driver's validated settings
    quick: bool
    argv: tuple[str, ...] = ()


def metrics_of(drivers: Mapping[str, ProbeDriver[Params]]) -> dict[str, Metric]:
    return {metric.name: metric for driver in drivers.values() for metric in driver.metrics()}


def pair_budgets(drivers: Mapping[str, ProbeDriver[Params]], settings: Mapping[str, Params]) -> dict[str, int]:
    """Probe -> the most pairs per node beyond the control planes', for the plan."""
    budgets = {probe: drivers[probe].pair_budget(s) for probe, s in settings.items() if probe in drivers}
    return {probe: budget for probe, budget in budgets.items() if budget is not None}


async def run(
    request: RunRequest,
    dispatcher: Dispatcher,
    drivers: Mapping[str, ProbeDriver[Params]],
    progress: Progress,
    *,
    finished: Callable[[RunRecord], object] | None = None,
) -> RunRecord:
    """Deploy, measure, judge; ``finished(record)`` is called once the record is complete and
    before the teardown starts (the CLI writes the results there).  A teardown that cannot finish
    afterwards raises LeftBehind (exit 3) carrying the record and what is left."""
    started = time.time()
    record: RunRecord | None = None
    progress.update("deploy", note=f"deploying agents ({dispatcher.name})")

    planned: list[tuple[tuple[Node, ...], Plan]] = []  # the plan agents_for made, for _measure

    def agents_for(nodes: Sequence[Node]) -> frozenset[str]:
        plan = plan_of(request, drivers, nodes, dispatcher.name)
        planned.append((tuple(nodes), plan))
        return agent_nodes(plan, drivers, nodes)

    try:
        async with dispatcher.deploy(request.run_id, agents_for=agents_for) as fleet:
            plan = next((p for nodes, p in planned if nodes == fleet.nodes), None)
            record = await _measure(request, fleet, drivers, progress, started, plan)
            if finished is not None:
                finished(record)
            progress.update("cleanup", note=fleet.teardown)
    except LeftBehind as exc:
        if record is None:
            raise
        raise LeftBehind(exc.leftovers, record) from None
    assert record is not None
    return record


def plan_of(
    request: RunRequest, drivers: Mapping[str, ProbeDriver[Params]], nodes: Sequence[Node], target: str
) -> Plan:
    return make_plan(request.checks, nodes, metrics_of(drivers), pair_budgets(drivers, request.settings), target=target)


def agent_nodes(plan: Plan, drivers: Mapping[str, ProbeDriver[Params]], nodes: Sequence[Node]) -> frozenset[str]:
    """The nodes ``plan`` needs an agent on (each probe's ``agent_nodes``): a control-plane-only
    scenario deploys on the control planes alone."""
    return frozenset().union(*(drivers[probe].agent_nodes(plan.keys_of(probe), nodes) for probe in plan.probes))


async def _measure(
    request: RunRequest,
    fleet: Fleet,
    drivers: Mapping[str, ProbeDriver[Params]],
    progress: Progress,
    started: float,
    plan: Plan | None = None,  # made on these nodes already (the dispatcher's agents_for)
) -> RunRecord:
    metrics = metrics_of(drivers)
    if not fleet.nodes:
        raise CouldNotRun("no nodes found to measure", hint="check the target (lab up? kubeconfig context?)")
    ready = len(set(fleet.agents) - set(fleet.unready))
    progress.update("deploy", note=f"{len(fleet.nodes)} nodes, {ready} agents ready")
    plan = plan or plan_of(request, drivers, fleet.nodes, fleet.target)
    execution = await execute(plan, fleet, drivers, request.settings, progress)
    results = dict(execution.results)
    timings = {t.probe: (t.started, t.ended) for t in execution.timings}
    verdicts = judge(plan, results, fleet.nodes, metrics)
    again = retry.to_remeasure(verdicts, results, metrics)
    superseded: tuple[Measurement, ...] = ()
    if again:
        progress.update("retry", note=f"{len(again)} results failed on a busy host: measuring them once more")
        second = await execute(retry.restricted(plan, again), fleet, drivers, request.settings, progress)
        superseded = tuple(results[key] for key in sorted(second.results, key=ResultKey.sort_key))
        first_results = dict(results)
        results.update(second.results)
        rejudged = judge(plan, results, fleet.nodes, metrics)
        verdicts = retry.merge(verdicts, rejudged, frozenset(second.results), first_results, metrics)
        timings.update({f"{t.probe} (again)": (t.started, t.ended) for t in second.timings})
    ended = time.time()
    return RunRecord(
        run_id=request.run_id,
        scenario=request.scenario,
        target=fleet.target,
        quick=request.quick,
        nodes=fleet.nodes,
        started=started,
        ended=ended,
        results=tuple(results[key] for key in sorted(results, key=ResultKey.sort_key)),
        verdicts=verdicts,
        checks=request.checks,
        unready=dict(fleet.unready),
        timings=timings,
        metadata={
            "tool": "talbench",
            "tool_version": tool_version(),
            "python": platform.python_version(),
            "coordinator_host": platform.node(),
            "coordinator_kernel": platform.release(),
            "argv": list(request.argv) or sys.argv[1:],
            "quick": request.quick,
            "settings": {probe: _plain(s) for probe, s in request.settings.items()},
            **dict(fleet.metadata),
        },
        superseded=superseded,
    )


def _plain(settings: Params) -> dict[str, object]:
    """Declared parameters (agents/params.py) as run.json keeps them."""
    return settings.model_dump(mode="json")


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """0 when nothing blocks (pass, warn, info), 1 when a check failed, has no data or is invalid."""
    return 1 if not verdicts or any(v.status.blocks for v in verdicts) else 0
