"""lab up / down / status as a user sees them, including the leftovers of crashed labs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from talbench.bench.errors import MissingDependency, NoPermission, UsageError
from talbench.bench.lab import lab, processes
from talbench.bench.lab.state import index_entry, load_state, register, unregister
from talbench.bench.lab.topology import LabSpec, make_spec, new_lab_id
from tests.bench.lab.helpers import lab_namespaces, lab_root, skip_unless_lab_possible


def test_up_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NoPermission) as caught:
        lab.up(LabSpec(), tmp_path)
    assert caught.value.hint and "root" in str(caught.value)
    with pytest.raises(NoPermission):
        lab.down(tmp_path)


def test_up_without_ip_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependency) as caught:
        lab.up(LabSpec(), tmp_path)
    assert "iproute2" in (caught.value.hint or "")


@pytest.mark.root("ip", "sysctl")
@pytest.mark.lab
def test_down_removes_everything_and_is_idempotent():
    skip_unless_lab_possible(agents=True)
    with lab_root() as root:
        state = lab.up(make_spec(1, 1, ["w1=1ms"]), root, persistent=False)
        pids = [n.pid for n in state.nodes] + [state.delayline_pid]
        assert all(pid and processes.alive(pid) for pid in pids)
        token = state.token_file
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(state.token()) >= 32
        assert index_entry(state.lab_id).exists()

        report = lab.down(root)

        assert state.lab_id in report.labs and len(report.namespaces) == 4 and not report.survivors
        assert set(pids) <= set(report.processes)
        assert lab_namespaces(state.lab_id) == []
        assert not any(processes.alive(pid) for pid in pids)
        assert not state.lab_dir.exists() and list(root.iterdir()) == []
        assert not index_entry(state.lab_id).exists()
        again = lab.down(root)
        assert state.lab_id not in again.labs and str(again) is not None
        assert lab.status(root) is None


@pytest.mark.root("ip", "sysctl")
@pytest.mark.lab
def test_down_removes_a_lab_whose_state_directory_was_deleted():
    skip_unless_lab_possible(agents=False)
    with lab_root() as root, lab_root() as elsewhere:
        state = lab.up(make_spec(1, 0, ["cp1=1ms"]), root, persistent=True, start_agents=False)
        shutil.rmtree(state.lab_dir)  # a crashed run's dir gone, namespaces and delay line left

        report = lab.down(elsewhere)  # any lab down cleans what crashed labs left

        assert state.lab_id in report.labs and state.delayline_pid in report.processes
        assert lab_namespaces(state.lab_id) == []
        assert not processes.alive(state.delayline_pid)


OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from talbench.bench.lab import lab
    from talbench.bench.lab.topology import make_spec
    state = lab.up(make_spec(1, 0, ["cp1=1ms"]), Path(sys.argv[1]), persistent=False, start_agents=False)
    print(state.lab_id, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.root("ip", "sysctl")
@pytest.mark.lab
def test_a_live_lab_of_another_root_is_left_alone_until_its_owner_dies():
    skip_unless_lab_possible(agents=False)
    with lab_root() as root, lab_root() as elsewhere:
        owner = subprocess.Popen([sys.executable, "-c", OWNER, str(root)], stdout=subprocess.PIPE, text=True)
        try:
            lab_id = owner.stdout.readline().strip()
            assert lab_id.startswith("lab"), "the owner did not bring its lab up"
            assert lab.down(elsewhere).labs == ()  # alive owner: not a leftover
            assert len(lab_namespaces(lab_id)) == 3
            status = lab.status(root)
            assert status is not None and status.condition == "up" and status.delayline == "running"

            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=10)
            assert lab.status(root).condition.startswith("crashed")
            report = lab.down(elsewhere)

            assert lab_id in report.labs and lab_namespaces(lab_id) == []
            assert not (root / lab_id).exists()
        finally:
            if owner.poll() is None:
                owner.kill()
            owner.wait(timeout=10)
            owner.stdout.close()


@pytest.mark.root("ip", "sysctl")
@pytest.mark.lab
def test_status_and_a_second_lab_up_on_the_same_root():
    skip_unless_lab_possible(agents=True)
    with lab_root() as root:
        state = lab.up(make_spec(1, 1, ["w1=2ms:1ms"]), root, persistent=True)
        with pytest.raises(UsageError) as caught:
            lab.up(LabSpec(1, 0), root)
        assert state.lab_id in str(caught.value)

        status = lab.status(root)
        assert status is not None and status.lab_id == state.lab_id and status.healthy
        assert [n.agent for n in status.nodes] == ["ok", "ok"]
        assert status.nodes[1].delay is not None and status.nodes[1].delay.jitter_ms == 1.0
        assert "w1=2ms:1ms" in status.render()
        assert lab.find_usable(root).lab_id == state.lab_id

        os.kill(state.node("w1").pid, signal.SIGKILL)
        assert processes.wait_gone([state.node("w1").pid], 5.0) == ()
        status = lab.status(root)
        assert not status.healthy and status.nodes[1].agent.startswith("agent exited")

        saved = json.loads((state.lab_dir / "lab.json").read_text())
        assert saved["schema"] == 1 and saved["token_file"] == str(state.token_file)
        assert {n["name"]: n["socket"] for n in saved["nodes"]} == {n.name: str(n.socket) for n in state.nodes}
        assert load_state(state.lab_dir) == state


@pytest.mark.root("ip", "sysctl")
def test_a_root_too_long_for_unix_sockets_is_refused(tmp_path):
    deep = tmp_path / ("x" * 100)
    with pytest.raises(UsageError) as caught:
        lab.up(LabSpec(1, 0), deep, start_agents=False)
    assert "too long" in str(caught.value)
    assert not deep.exists()


@pytest.mark.root("ip")
def test_leftover_index_entries_go_but_a_lab_of_another_talbench_version_stays(tmp_path):
    other_root = tmp_path / "other"
    foreign_id, gone_id = new_lab_id(), new_lab_id()
    foreign = other_root / foreign_id
    foreign.mkdir(parents=True)
    (foreign / "lab.json").write_text(json.dumps({"schema": 99, "lab_id": foreign_id}))
    register(foreign_id, foreign)
    register(gone_id, other_root / gone_id)  # its directory is gone: a leftover
    try:
        report = lab.down(tmp_path / "mine")

        assert gone_id in report.labs and not index_entry(gone_id).exists()
        assert foreign_id not in report.labs and index_entry(foreign_id).exists() and foreign.exists()
        assert foreign_id in lab.down(other_root).labs  # its own root: removed
        assert not foreign.exists() and not index_entry(foreign_id).exists()
    finally:
        unregister(foreign_id)
        unregister(gone_id)
