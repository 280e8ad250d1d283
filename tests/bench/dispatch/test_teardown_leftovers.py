"""Results before teardown, with a stand-in dispatcher (no root, no cluster): run() hands the
finished record to ``finished`` before the deploy context tears down; a teardown that leaves
something raises LeftBehind carrying that record; ``talbench run`` writes run.json and junit.xml,
shows the verdicts, then names what is left and the clean command, exit 3.  The same against the
real control plane: tests/bench/kube/test_real_teardown.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from talbench.bench import cli
from talbench.bench.cli import run as cli_run
from talbench.bench.cli.options import kube_options
from talbench.bench.dispatch.base import Fleet, LeftBehind, Leftovers
from talbench.bench.dispatch.kube import KubeDispatcher, KubeOptions
from talbench.bench.errors import UsageError
from talbench.bench.model import Node, Role
from talbench.bench.run import run
from tests.bench.kube.runs import SCENARIO

NODES = tuple(Node(f"cp{i}", Role.CONTROL_PLANE, f"10.0.0.{i}") for i in (1, 2, 3))
COMMAND = "talbench clean --run-id RUN --kubeconfig /k"


class StandIn:
    """Three nodes whose agents never came (every result is no_data: a run that finishes at
    once); leaving the context records the teardown and, with ``leave``, reports leftovers."""

    name = "stand-in"

    def __init__(self, events: list[str], leave: tuple[str, ...] = ()) -> None:
        self.events = events
        self.leave = leave

    async def discover(self) -> tuple[Node, ...]:
        return NODES

    @contextlib.asynccontextmanager
    async def deploy(self, run_id: str, *, agents_for: Any = None) -> AsyncIterator[Fleet]:
        unready = {n.name: "stand-in" for n in NODES}
        yield Fleet(run_id, NODES, {}, unready=unready, target="kube", teardown="removing the stand-in: waiting")
        self.events.append("teardown")
        if self.leave:
            raise LeftBehind(Leftovers(run_id, self.leave, COMMAND.replace("RUN", run_id), 20.0))


class Notes:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def update(self, task: str, *, done: int | None = None, total: int | None = None, note: str = "") -> None:
        if task == "cleanup":
            self.events.append(f"progress: {note}")


def _request(run_id: str):
    from talbench.bench.plan import select_checks
    from talbench.bench.probes import default_drivers
    from talbench.bench.run import RunRequest, metrics_of
    from talbench.bench.scenario import parse

    drivers = default_drivers()
    settings = {}

    def validate(probe, raw):
        settings[probe] = drivers[probe].settings(raw, quick=True)

    scenario = parse(SCENARIO, "<test>", metrics_of(drivers), validate)
    checks = select_checks(scenario, ["rtt"])
    return RunRequest(run_id, scenario, checks, settings, True, ()), drivers


async def test_the_record_is_handed_over_before_the_teardown_and_leftovers_carry_it():
    events: list[str] = []
    request, drivers = _request("run-left")
    handed = []

    def finished(record):
        handed.append(record)
        events.append("finished")

    with pytest.raises(LeftBehind) as caught:
        dispatcher = StandIn(events, ("namespace talbench-run-left (still terminating)",))
        await run(request, dispatcher, drivers, Notes(events), finished=finished)
    assert events == ["finished", "progress: removing the stand-in: waiting", "teardown"]
    assert caught.value.record is handed[0] and caught.value.exit_code == 3
    assert caught.value.leftovers.what == ("namespace talbench-run-left (still terminating)",)
    message = str(caught.value)
    assert "\n" not in message and message.endswith("remove it with: talbench clean --run-id run-left --kubeconfig /k")
    assert "namespace talbench-run-left (still terminating) is left" in message


async def test_a_clean_teardown_returns_the_record_it_handed_over():
    events: list[str] = []
    request, drivers = _request("run-ok")
    handed = []
    record = await run(request, StandIn(events), drivers, Notes(events), finished=handed.append)
    assert handed == [record] and events[-1] == "teardown"


def test_the_cli_writes_results_shows_them_then_names_what_is_left_exit_3(tmp_path, monkeypatch, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    leftover = ("namespace talbench-X (still terminating)",)
    monkeypatch.setattr(cli_run, "make_dispatcher", lambda args: StandIn([], leftover))
    code = cli.main(["run", "--scenario", str(scenario), "--only", "rtt", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    (run_dir,) = (tmp_path / "out").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["run_id"] == run_dir.name
    assert (run_dir / "junit.xml").exists() and "FAILED" in captured.out  # no_data verdicts, shown
    last = captured.err.strip().splitlines()[-1]
    assert last == (
        "talbench: error: the results are written; the run's teardown did not finish within 20s: "
        f"namespace talbench-X (still terminating) is left; remove it with: talbench clean --run-id {run_dir.name} "
        "--kubeconfig /k"
    )


def test_the_clean_command_repeats_the_runs_kubeconfig_context_and_namespace():
    plain = KubeDispatcher(KubeOptions())
    assert plain.clean_command("r1") == "talbench clean --run-id r1"
    given = KubeDispatcher(KubeOptions(kubeconfig="/a b/kc", context="admin@lab", namespace="bench"))
    assert given.clean_command("r1") == (
        "talbench clean --run-id r1 --kubeconfig '/a b/kc' --context admin@lab --namespace bench"
    )


def test_delete_timeout_is_an_option_of_run_and_clean():
    parser = cli.build_parser()
    for argv in (["run", "--scenario", "x", "--delete-timeout", "20"], ["clean", "--delete-timeout", "20"]):
        args = parser.parse_args(argv)
        assert kube_options(args).delete_timeout == 20.0
    assert kube_options(parser.parse_args(["clean"])).delete_timeout == 120.0
    with pytest.raises(UsageError, match="--delete-timeout 0"):
        kube_options(parser.parse_args(["clean", "--delete-timeout", "0"]))
