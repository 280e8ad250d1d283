"""Taking labs down: what a lab's add-ons left (bench/lab/addons.py: their recorded pids and
teardown commands), its processes, namespaces, directory and index entry, and whatever crashed
labs left anywhere on this host.  Idempotent; works from the namespaces and the records beside
the index themselves, so a missing or corrupt lab.json is no obstacle."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from talbench.bench.errors import UsageError
from talbench.bench.lab import processes
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.state import Leftovers, StateError, StateMissing
from talbench.bench.lab.status import lab_condition
from talbench.bench.lab.topology import is_lab_id, lab_id_of_namespace

DEFAULT_TERM_TIMEOUT = 10.0  # an agent stops what its probes left running (etcd members) on SIGTERM


@dataclass(frozen=True)
class DownReport:
    """What ``down`` removed."""

    labs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    processes: tuple[int, ...] = ()
    paths: tuple[str, ...] = ()
    survivors: tuple[int, ...] = ()  # processes that would not die even after SIGKILL
    # what add-ons' teardown commands removed: (kind, item), e.g. ("containers", "talbench-lab...-cp1")
    removed: tuple[tuple[str, str], ...] = ()

    @property
    def removed_anything(self) -> bool:
        return bool(self.labs or self.namespaces or self.processes or self.paths or self.removed)

    def removed_of(self, kind: str) -> tuple[str, ...]:
        return tuple(item for k, item in self.removed if k == kind)

    def __str__(self) -> str:
        if not self.removed_anything:
            return "nothing to remove"
        text = (
            f"removed lab {', '.join(self.labs) or '-'}: {len(self.namespaces)} namespaces, "
            f"{len(self.processes)} processes, {len(self.paths)} directories"
        )
        for kind, count in Counter(kind for kind, _ in self.removed).items():
            text += f", {count} {kind}"
        if self.survivors:
            text += f"; processes that would not die: {', '.join(map(str, self.survivors))}"
        return text

    def merge(self, other: DownReport) -> DownReport:
        return DownReport(
            self.labs + other.labs,
            self.namespaces + other.namespaces,
            self.processes + other.processes,
            self.paths + other.paths,
            self.survivors + other.survivors,
            self.removed + other.removed,
        )


def down(
    root: Path,
    lab_id: str | None = None,
    *,
    term_timeout: float = DEFAULT_TERM_TIMEOUT,
) -> DownReport:
    """Remove the lab ``lab_id`` under ``root`` (every lab under ``root`` when None), then the
    leftovers of crashed labs anywhere on this host.  Idempotent."""
    require_root("lab down")
    ip = Ip.locate()
    root = Path(root).resolve()
    if lab_id is not None:
        if not is_lab_id(lab_id):
            raise UsageError(f"not a lab id: {lab_id!r}")
        targets = {lab_id: root / lab_id}
    else:
        targets = {p.name: p for p in lab_state.lab_dirs(root)}
        for other_id, other_dir in lab_state.read_index().items():
            if other_dir is not None and other_dir.parent == root:
                targets.setdefault(other_id, other_dir)
    report = DownReport()
    for target_id, target_dir in sorted(targets.items()):
        report = report.merge(remove_lab(ip, target_id, target_dir, term_timeout=term_timeout))
    return report.merge(remove_leftovers(term_timeout=term_timeout, ip=ip))


def remove_leftovers(*, term_timeout: float = DEFAULT_TERM_TIMEOUT, ip: Ip | None = None) -> DownReport:
    """Remove what crashed labs left anywhere on this host: lab namespaces with no index entry,
    labs whose state directory is gone, and labs whose owner died (unless persistent and up).
    Live labs of other roots and other programs' ``tb-`` namespaces are left alone."""
    require_root("lab down")
    ip = ip or Ip.locate()
    present = ip.netns_list()
    index = lab_state.read_index()
    candidates = {lab for lab in map(lab_id_of_namespace, present) if lab} | set(index)
    candidates |= lab_state.labs_with_leftovers()
    report = DownReport()
    for lab_id in sorted(candidates):
        lab_dir = index.get(lab_id)
        if lab_dir is not None and _is_live(ip, lab_dir, present):
            continue
        report = report.merge(remove_lab(ip, lab_id, lab_dir, term_timeout=term_timeout))
    return report


def _is_live(ip: Ip, lab_dir: Path, present: Iterable[str]) -> bool:
    """False for a crashed lab.  A lab.json that exists but cannot be read (another talbench
    version's schema) counts as live: only ``down`` of its own root removes it."""
    try:
        state = lab_state.load_state(lab_dir)
    except StateMissing:
        return False
    except StateError:
        return True
    return not lab_condition(ip, state, present).startswith("crashed")


def remove_lab(ip: Ip, lab_id: str, lab_dir: Path | None, *, term_timeout: float) -> DownReport:
    """Stop what the lab's add-ons left (their recorded pids in order, then their teardown
    commands), kill every process in the lab's namespaces, delete them, the add-ons' paths, the
    lab's directory and index entry.  Works from the namespaces and the records beside the index
    themselves, so a missing or corrupt lab.json is no obstacle."""
    recorded: list[int] = []
    records: dict[str, Leftovers] = {r.name: r for r in lab_state.read_leftovers(lab_id)}
    if lab_dir is not None:
        try:
            state = lab_state.load_state(lab_dir)
            recorded = [n.pid for n in state.nodes if n.pid] + ([state.delayline_pid] if state.delayline_pid else [])
            records.update((r.name, r) for r in state.leftovers)
        except StateError:
            pass
    namespaces = [ns for ns in ip.netns_list() if lab_id_of_namespace(ns) == lab_id]
    removed: list[tuple[str, str]] = []
    for leftovers in reversed(records.values()):  # the last add-on up is the first down
        recorded += leftovers.pids
        _stop_in_order(ip, leftovers.pids, namespaces, term_timeout=term_timeout)
        removed += _run_teardown(leftovers)
    killed: list[int] = []
    survivors: tuple[int, ...] = ()
    for _ in range(3):  # a dying process may have started another one meanwhile
        pids = sorted({pid for ns in namespaces for pid in ip.netns_pids(ns)} - {os.getpid()})
        if not pids:
            break
        killed += pids
        survivors = processes.terminate(pids, term_timeout=term_timeout)
    for pid in recorded:
        processes.reap(pid)  # our own children (agents this process spawned) leave no zombie
    deleted = [ns for ns in _deletion_order(namespaces, lab_id) if ip.netns_delete(ns)]
    paths: list[str] = []
    for leftovers in records.values():
        for path in map(Path, leftovers.paths):
            if path.exists() or path.is_symlink():
                _remove_path(path)
                paths.append(str(path))
    if lab_dir is not None and lab_dir.name == lab_id and lab_dir.exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
        paths.append(str(lab_dir))
    registered = lab_state.unregister(lab_id)
    touched = bool(deleted or killed or paths or registered or removed or records)
    return DownReport(
        (lab_id,) if touched else (),
        tuple(deleted),
        tuple(sorted(set(killed))),
        tuple(paths),
        survivors,
        tuple(removed),
    )


def _stop_in_order(ip: Ip, pids: Iterable[int], namespaces: Iterable[str], *, term_timeout: float) -> None:
    """Each recorded pid in turn (clients before the servers they would wait for), bounded; only
    pids that are still processes of the lab's namespaces are signalled (a pid may be reused)."""
    present = {pid for ns in namespaces for pid in ip.netns_pids(ns)}
    for pid in pids:
        if pid in present:
            processes.terminate([pid], term_timeout=term_timeout)


def _run_teardown(leftovers: Leftovers) -> list[tuple[str, str]]:
    """Run an add-on's teardown command (bounded); what it says it removed, from its last line
    ``{"removed": {kind: [item, ...]}}`` (nothing when it says nothing, fails or times out)."""
    if not leftovers.teardown:
        return []
    try:
        done = subprocess.run(
            list(leftovers.teardown),
            cwd=leftovers.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=leftovers.timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = done.stdout.strip().splitlines()
    try:
        said = json.loads(lines[-1])["removed"] if lines else {}
        return [(str(kind), str(item)) for kind, items in said.items() for item in items]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _remove_path(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _deletion_order(namespaces: list[str], lab_id: str) -> list[str]:
    """Nodes first, then the router, the bridge last."""
    tail = [f"tb-{lab_id}-rt", f"tb-{lab_id}-br"]
    return [ns for ns in namespaces if ns not in tail] + [ns for ns in tail if ns in namespaces]
