"""A lab's state on disk, and the host-wide index of labs.

    <root>/<lab_id>/lab.json               this module's LabState (schema 1), written atomically
    <root>/<lab_id>/token                  the agents' bearer token (0600, random per lab)
    <root>/<lab_id>/nodes/<name>/data/     the node's data directory (on real disk)
    <root>/<lab_id>/nodes/<name>/agent.sock, agent.log
    <root>/<lab_id>/nodes/<name>/...       whatever an agent launcher (bench/lab/addons.py) puts
                                           there; the socket may be elsewhere under the node's directory
    <index>/<lab_id>.json                  {"schema", "lab_id", "lab_dir"}: where each lab's state
                                           lives, so that any ``lab down`` can tell a live lab
                                           (of another root) from the leftovers of a crashed one.
    <index>/<lab_id>.leftovers.json        what the lab's add-ons leave behind (Leftovers), kept
                                           beside the index entry: the lab's directory may be gone
                                           when a crashed lab is swept.

The index lives on /run (tmpfs), like the namespaces it describes: both vanish on reboot.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from talbench.bench.lab.topology import NodeDelay, is_lab_id
from talbench.bench.model import Node, Role

SCHEMA_VERSION = 1
LAB_FILE = "lab.json"
TOKEN_FILE = "token"
DELAYLINE_LOG = "delayline.log"
LEFTOVERS_SUFFIX = ".leftovers.json"
# One index per host, like /run/netns: every lab must be in it, or another talbench's ``lab down``
# takes its namespaces for a crashed lab's leftovers.  Hence a constant, not a parameter.
INDEX_DIR = Path("/run/talbench/labs")

STATUS_CREATING = "creating"
STATUS_UP = "up"


class StateError(Exception):
    """A lab.json that is missing or cannot be read (message is one line)."""


class StateMissing(StateError):
    """The lab.json (or its whole directory) is gone."""


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (immune to wall-clock steps); None when it
    does not exist or is a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22: starttime


@dataclass(frozen=True)
class Owner:
    """The process that created the lab (and removes it, unless the lab is persistent)."""

    pid: int
    start_ticks: int  # so that a reused pid does not pass for the owner

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        ticks = process_start_ticks(pid)
        assert ticks is not None
        return cls(pid, ticks)

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


@dataclass(frozen=True)
class LabNode:
    name: str
    role: Role
    namespace: str
    address: str
    port: int
    labels: Mapping[str, str] = field(hash=False, compare=False)
    taints: tuple[str, ...]
    node_dir: Path
    pid: int | None = None  # the agent's pid (None before it starts, or without agents)
    socket_name: str = "agent.sock"  # relative to node_dir (an agent launcher may put it elsewhere)

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    @property
    def socket(self) -> Path:
        return self.node_dir / self.socket_name

    @property
    def log(self) -> Path:
        return self.node_dir / "agent.log"

    def to_node(self) -> Node:
        return Node(self.name, self.role, self.address, dict(self.labels), self.taints)


DEFAULT_TEARDOWN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Leftovers:
    """What one add-on leaves on the host, for ``down`` (which never imports the add-on)."""

    name: str
    pids: tuple[int, ...] = ()  # stopped in this order, before the lab's namespace sweep
    teardown: tuple[str, ...] = ()  # argv run before the sweep (idempotent; works without the lab's directory)
    cwd: str | None = None  # where the teardown runs (a checkout the add-on's modules import from)
    timeout: float = DEFAULT_TEARDOWN_TIMEOUT
    paths: tuple[str, ...] = ()  # files or directories outside the lab's directory, removed after the sweep

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pids": list(self.pids),
            "teardown": list(self.teardown),
            "cwd": self.cwd,
            "timeout": self.timeout,
            "paths": list(self.paths),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Leftovers:
        return cls(
            name=str(data["name"]),
            pids=tuple(int(p) for p in data.get("pids") or ()),
            teardown=tuple(str(a) for a in data.get("teardown") or ()),
            cwd=None if data.get("cwd") is None else str(data["cwd"]),
            timeout=float(data.get("timeout", DEFAULT_TEARDOWN_TIMEOUT)),
            paths=tuple(str(p) for p in data.get("paths") or ()),
        )


@dataclass(frozen=True)
class LabState:
    lab_id: str
    lab_dir: Path
    created: float
    status: str  # "creating" | "up"
    persistent: bool  # True: outlives its owner (talbench lab up); False: its owner removes it
    owner: Owner
    control_planes: int
    workers: int
    nodes: tuple[LabNode, ...]
    delays: tuple[NodeDelay, ...]
    bridge_namespace: str
    router_namespace: str | None = None
    delayline_pid: int | None = None
    launcher: Mapping[str, Any] | None = field(default=None, hash=False)  # None: agents are processes
    leftovers: tuple[Leftovers, ...] = ()  # what add-ons leave behind (bench/lab/addons.py)
    schema: int = SCHEMA_VERSION

    @property
    def token_file(self) -> Path:
        return self.lab_dir / TOKEN_FILE

    @property
    def namespaces(self) -> tuple[str, ...]:
        extra = (self.router_namespace,) if self.router_namespace else ()
        return (self.bridge_namespace, *extra, *(n.namespace for n in self.nodes))

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def cluster_nodes(self) -> tuple[Node, ...]:
        """The lab's nodes as bench.model.Node records (what a Fleet carries)."""
        return tuple(node.to_node() for node in self.nodes)

    def with_changes(self, **changes: Any) -> LabState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "lab_id": self.lab_id,
            "created": self.created,
            "status": self.status,
            "persistent": self.persistent,
            "owner": {"pid": self.owner.pid, "start_ticks": self.owner.start_ticks},
            "control_planes": self.control_planes,
            "workers": self.workers,
            "token_file": str(self.token_file),
            "bridge_namespace": self.bridge_namespace,
            "router_namespace": self.router_namespace,
            "delayline_pid": self.delayline_pid,
            "launcher": dict(self.launcher) if self.launcher is not None else None,
            "leftovers": [record.to_json() for record in self.leftovers],
            "delays": [{"node": d.node, "delay_ms": d.delay_ms, "jitter_ms": d.jitter_ms} for d in self.delays],
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role.value,
                    "namespace": n.namespace,
                    "address": n.address,
                    "port": n.port,
                    "labels": dict(n.labels),
                    "taints": list(n.taints),
                    "data_dir": str(n.data_dir),
                    "socket": str(n.socket),
                    "log": str(n.log),
                    "pid": n.pid,
                }
                for n in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], lab_dir: Path) -> LabState:
        try:
            if data.get("schema") != SCHEMA_VERSION:
                raise StateError(f"{lab_dir / LAB_FILE}: unsupported schema {data.get('schema')!r}")
            return cls(
                lab_id=str(data["lab_id"]),
                lab_dir=lab_dir,
                created=float(data["created"]),
                status=str(data["status"]),
                persistent=bool(data["persistent"]),
                owner=Owner(int(data["owner"]["pid"]), int(data["owner"]["start_ticks"])),
                control_planes=int(data["control_planes"]),
                workers=int(data["workers"]),
                nodes=tuple(
                    LabNode(
                        name=str(n["name"]),
                        role=Role(n["role"]),
                        namespace=str(n["namespace"]),
                        address=str(n["address"]),
                        port=int(n["port"]),
                        labels={str(k): str(v) for k, v in n["labels"].items()},
                        taints=tuple(str(t) for t in n["taints"]),
                        node_dir=Path(n["data_dir"]).parent,
                        pid=None if n.get("pid") is None else int(n["pid"]),
                        socket_name=Path(n["socket"]).relative_to(Path(n["data_dir"]).parent).as_posix(),
                    )
                    for n in data["nodes"]
                ),
                delays=tuple(
                    NodeDelay(str(d["node"]), float(d["delay_ms"]), float(d["jitter_ms"])) for d in data["delays"]
                ),
                bridge_namespace=str(data["bridge_namespace"]),
                router_namespace=data.get("router_namespace"),
                delayline_pid=data.get("delayline_pid"),
                launcher=dict(data["launcher"]) if data.get("launcher") is not None else None,
                leftovers=tuple(Leftovers.from_json(r) for r in data.get("leftovers") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"{lab_dir / LAB_FILE}: malformed ({type(exc).__name__}: {exc})") from exc


def write_json_atomic(path: Path, data: Mapping[str, Any], *, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_state(state: LabState) -> None:
    write_json_atomic(state.lab_dir / LAB_FILE, state.to_json())


def load_state(lab_dir: Path) -> LabState:
    path = lab_dir / LAB_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise StateMissing(f"{path}: missing") from exc
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a JSON object")
    return LabState.from_json(data, lab_dir)


def write_token(lab_dir: Path) -> Path:
    path = lab_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path


def lab_dirs(root: Path) -> tuple[Path, ...]:
    """The lab directories under ``root`` (whatever state they are in), by name."""
    try:
        return tuple(sorted(p for p in root.iterdir() if p.is_dir() and is_lab_id(p.name)))
    except FileNotFoundError:
        return ()


# -- the host-wide index -----------------------------------------------------------------------


def register(lab_id: str, lab_dir: Path) -> None:
    """Add the lab to the index; FileExistsError when its id is taken (never overwritten)."""
    INDEX_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = {"schema": SCHEMA_VERSION, "lab_id": lab_id, "lab_dir": str(lab_dir.resolve()), "registered": time.time()}
    tmp = INDEX_DIR / f".{lab_id}.{secrets.token_hex(4)}.tmp"
    write_json_atomic(tmp, entry)
    try:
        os.link(tmp, index_entry(lab_id))  # atomic and exclusive: readers never see half an entry
    finally:
        tmp.unlink(missing_ok=True)


def index_entry(lab_id: str) -> Path:
    return INDEX_DIR / f"{lab_id}.json"


def unregister(lab_id: str) -> bool:
    path = index_entry(lab_id)
    existed = path.exists()
    path.unlink(missing_ok=True)
    leftovers_entry(lab_id).unlink(missing_ok=True)
    return existed


def leftovers_entry(lab_id: str) -> Path:
    return INDEX_DIR / f"{lab_id}{LEFTOVERS_SUFFIX}"


def save_leftovers(lab_id: str, records: tuple[Leftovers, ...]) -> None:
    INDEX_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"schema": SCHEMA_VERSION, "lab_id": lab_id, "leftovers": [r.to_json() for r in records]}
    write_json_atomic(leftovers_entry(lab_id), data, mode=0o600)


def read_leftovers(lab_id: str) -> tuple[Leftovers, ...]:
    """The add-ons' leftovers on record beside the index entry (empty when none or unreadable)."""
    try:
        data = json.loads(leftovers_entry(lab_id).read_text())
        return tuple(Leftovers.from_json(r) for r in data["leftovers"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def labs_with_leftovers() -> set[str]:
    """Lab ids with add-on leftovers on record (whatever their lab's state)."""
    try:
        names = [p.name for p in INDEX_DIR.glob(f"lab*{LEFTOVERS_SUFFIX}")]
    except OSError:
        return set()
    return {lab_id for name in names if is_lab_id(lab_id := name[: -len(LEFTOVERS_SUFFIX)])}


def read_index() -> dict[str, Path | None]:
    """lab id -> its lab directory (None when the entry cannot be read)."""
    entries: dict[str, Path | None] = {}
    try:
        paths = list(INDEX_DIR.glob("lab*.json"))
    except OSError:
        return entries
    for path in paths:
        lab_id = path.name[: -len(".json")]
        if not is_lab_id(lab_id):
            continue
        try:
            data = json.loads(path.read_text())
            entries[lab_id] = Path(data["lab_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            entries[lab_id] = None
    return entries
