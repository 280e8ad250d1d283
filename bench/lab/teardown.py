"""Taking labs down: a lab's containers (runc), processes, namespaces, cgroups, directory and
index entry, and whatever crashed labs left anywhere on this host.  Idempotent; works from the
namespaces, container ids and cgroup names themselves, so a missing or corrupt lab.json is no
obstacle."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from talbench.bench.errors import UsageError
from talbench.bench.lab import containers, kube_control, processes
from talbench.bench.lab import state as lab_state
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.state import StateError, StateMissing
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
    containers: tuple[str, ...] = ()  # runc containers (labs brought up with --image)
    cgroups: tuple[str, ...] = ()

    @property
    def removed_anything(self) -> bool:
        return bool(self.labs or self.namespaces or self.processes or self.paths or self.containers or self.cgroups)

    def __str__(self) -> str:
        if not self.removed_anything:
            return "nothing to remove"
        text = (
            f"removed lab {', '.join(self.labs) or '-'}: {len(self.namespaces)} namespaces, "
            f"{len(self.processes)} processes, {len(self.paths)} directories"
        )
        if self.containers or self.cgroups:
            text += f", {len(self.containers)} containers, {len(self.cgroups)} cgroup directories"
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
            self.containers + other.containers,
            self.cgroups + other.cgroups,
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
    candidates |= containers.leftover_lab_ids()
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
    """Stop the lab's containers (SIGTERM, the grace period its pod had, SIGKILL, delete), kill
    every process in its namespaces, delete them, its cgroups, its directory and index entry.
    Works from the namespaces and container ids themselves, so a missing or corrupt lab.json is
    no obstacle (its containers then get ``term_timeout`` to stop)."""
    recorded: list[int] = []
    grace = term_timeout
    if lab_dir is not None:
        try:
            state = lab_state.load_state(lab_dir)
            recorded = [n.pid for n in state.nodes if n.pid] + ([state.delayline_pid] if state.delayline_pid else [])
            recorded += kube_control.recorded_pids(lab_dir)
            grace = state.image.grace_seconds if state.image else term_timeout
        except StateError:
            pass
    if lab_dir is not None:  # a Kubernetes lab's control plane, in order (bench/lab/kube_control.py)
        kube_control.stop(ip, lab_dir, term_timeout=term_timeout)
    stopped = containers.stop_lab(lab_id, grace)
    namespaces = [ns for ns in ip.netns_list() if lab_id_of_namespace(ns) == lab_id]
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
    cgroups = containers.remove_cgroups(lab_id)
    paths: list[str] = []
    if lab_dir is not None and lab_dir.name == lab_id and lab_dir.exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
        paths.append(str(lab_dir))
    registered = lab_state.unregister(lab_id)
    touched = bool(deleted or killed or paths or registered or stopped or cgroups)
    return DownReport(
        (lab_id,) if touched else (),
        tuple(deleted),
        tuple(sorted(set(killed))),
        tuple(paths),
        survivors,
        stopped,
        cgroups,
    )


def _deletion_order(namespaces: list[str], lab_id: str) -> list[str]:
    """Nodes first, then the router, the bridge last."""
    tail = [f"tb-{lab_id}-rt", f"tb-{lab_id}-br"]
    return [ns for ns in namespaces if ns not in tail] + [ns for ns in tail if ns in namespaces]
