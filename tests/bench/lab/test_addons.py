"""The lab's add-on point (bench/lab/addons.py) without root: what an add-on leaves behind is
recorded in lab.json and beside the index, and ``down`` removes it from the record alone (pids
in order, the teardown command's report), even when the lab's directory is gone."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from talbench.bench.lab import processes, teardown
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.lab import _initial_state
from talbench.bench.lab.state import Leftovers, load_state, save_state
from talbench.bench.lab.topology import LabSpec, plan_lab

LAB_ID = "lab0a0b0c"
SAYS_REMOVED = 'import json; print("noise"); print(json.dumps({"removed": {"containers": ["c1", "c2"], "cgroup directories": ["/g"]}}))'


@dataclass
class FakeIp:
    """The namespaces of one lab, none with a process."""

    namespaces: list[str] = field(default_factory=lambda: [f"tb-{LAB_ID}-cp1", f"tb-{LAB_ID}-br"])

    def netns_list(self) -> tuple[str, ...]:
        return tuple(self.namespaces)

    def netns_pids(self, name: str) -> tuple[int, ...]:
        return ()

    def netns_delete(self, name: str) -> bool:
        self.namespaces.remove(name)
        return True


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(lab_state, "INDEX_DIR", tmp_path / "index")
    return tmp_path / "index"


def test_leftovers_round_trip_through_lab_json(tmp_path: Path):
    state = _initial_state(plan_lab(LabSpec(1, 0), LAB_ID), tmp_path, persistent=True, port=7000)
    record = Leftovers("kubernetes", pids=(3, 2, 1), teardown=("tool", "down", LAB_ID), cwd="/src", timeout=9.0)
    save_state(state.with_changes(leftovers=(record,), launcher={"archive": "/x.tar"}))
    again = load_state(tmp_path)
    assert again.leftovers == (record,) and again.launcher == {"archive": "/x.tar"}
    assert again.nodes[0].socket == tmp_path / "nodes" / "cp1" / "agent.sock"


@pytest.mark.processes  # runs the recorded teardown command
def test_down_runs_the_recorded_teardown_even_without_the_lab_directory(tmp_path: Path, index: Path, monkeypatch):
    stopped: list[tuple[int, ...]] = []
    monkeypatch.setattr(processes, "terminate", lambda pids, **_: stopped.append(tuple(pids)) or ())
    lab_state.register(LAB_ID, tmp_path / LAB_ID)
    records = (Leftovers("quiet"), Leftovers("loud", teardown=(sys.executable, "-c", SAYS_REMOVED)))
    lab_state.save_leftovers(LAB_ID, records)
    assert lab_state.labs_with_leftovers() == {LAB_ID} and lab_state.read_index().keys() == {LAB_ID}

    report = teardown.remove_lab(FakeIp(), LAB_ID, tmp_path / LAB_ID, term_timeout=1.0)  # type: ignore[arg-type]

    assert report.labs == (LAB_ID,) and report.removed_of("containers") == ("c1", "c2")
    assert "2 containers, 1 cgroup directories" in str(report) and len(report.namespaces) == 2
    assert stopped == [] and not list(index.iterdir())  # index entry and record gone


def test_recorded_pids_are_stopped_in_order_and_only_while_in_the_labs_namespaces(monkeypatch):
    stopped: list[int] = []
    monkeypatch.setattr(processes, "terminate", lambda pids, **_: stopped.extend(pids) or ())

    class Busy(FakeIp):
        def netns_pids(self, name: str) -> tuple[int, ...]:
            return (30, 10) if name.endswith("-cp1") else ()

    teardown._stop_in_order(Busy(), (10, 20, 30), Busy().namespaces, term_timeout=1.0)  # type: ignore[arg-type]
    assert stopped == [10, 30]  # 20 is no longer the lab's: a reused pid is left alone


@pytest.mark.processes  # runs the teardown commands
def test_a_teardown_that_fails_or_says_nothing_reports_nothing():
    assert teardown._run_teardown(Leftovers("x", teardown=(sys.executable, "-c", "raise SystemExit(3)"))) == []
    assert teardown._run_teardown(Leftovers("x", teardown=("/nonexistent/tool",))) == []
    assert teardown._run_teardown(Leftovers("x")) == []
