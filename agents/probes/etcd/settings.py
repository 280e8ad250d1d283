"""The etcd probe's parameters, declared once.

The scenario's ``probes.etcd`` block (``EtcdSettings``) is made of the parts below; the agent's
jobs take the same parts (same names, defaults and bounds) plus what the coordinator fills in:
the ``etcd.member`` start action takes ``MemberPorts``, ``MemberTiming`` and ``Startup``, the
``etcd.load`` job ``LoadShape`` and ``Startup`` (it waits that long for a leader).  The live-etcd
mode (coordinator only) reuses ``LoadWindow`` and ``WriteFloor``.

Durations are seconds and sizes bytes on the wire; scenario files may write ``100ms`` or
``1KiB``.  The run a ``--quick`` shortened says so (``LoadWindow.quick``): not a scenario field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import PrivateAttr, StringConstraints, model_validator

from talbench.agents.params import BYTES, PER_SECOND, SECONDS, Params, param
from talbench.agents.probes.etcd.profiles import KEY_SIZE, PROFILES, VALUE_SIZE

MAX_MEMBERS = 9
MAX_OPEN_LOOP_WRITES = 20_000_000  # rate x duration: bounds the generator's schedule and the keys left to delete

MEMBER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
IP_HOST = r"(\[[0-9A-Fa-f:.]+\]|[0-9.]+)"
MEMBER_URL = rf"^http://{IP_HOST}:{PORT}$"  # a scratch member's peer or client URL: plain HTTP on a node address

MemberName = Annotated[str, StringConstraints(pattern=MEMBER_NAME)]
MemberUrl = Annotated[str, StringConstraints(pattern=MEMBER_URL)]
Profile = Literal["s", "m", "l", "xl", "custom"]
LoadMode = Literal["open", "ceiling"]

# Talos (and Kubernetes) ports a scratch member must never take.
RESERVED_PORTS: tuple[tuple[int, int], ...] = (
    (2379, 2383),
    (4789, 4789),
    (6443, 6443),
    (7445, 7445),
    (8472, 8472),
    (10250, 10250),
    (50000, 50001),
    (51820, 51820),
)


def port_is_reserved(port: int) -> bool:
    return any(low <= port <= high for low, high in RESERVED_PORTS)


class MemberPorts(Params):
    """Where a scratch member listens (the scenario's are the first member's: members sharing an
    address count up from them)."""

    client_port: int = param(12379, ge=1024, le=65535, help="the scratch members' client port (TCP)")
    peer_port: int = param(12380, ge=1024, le=65535, help="the scratch members' peer port (TCP)")

    @model_validator(mode="after")
    def _clear_of_talos(self) -> Self:
        for name, port in (("client_port", self.client_port), ("peer_port", self.peer_port)):
            if port_is_reserved(port):
                raise ValueError(f"{name} {port} is a port Talos or Kubernetes uses; choose another")
        if self.client_port == self.peer_port:
            raise ValueError("client_port and peer_port must differ")
        return self


class MemberTiming(Params):
    """The scratch members' raft timing."""

    heartbeat_interval: float = param(
        0.1, ge=0.01, le=5.0, unit=SECONDS, help="the members' --heartbeat-interval (etcd's and Talos' default: 100 ms)"
    )
    election_timeout: float = param(
        1.0, ge=0.05, le=50.0, unit=SECONDS, help="the members' --election-timeout, at least 5x the heartbeat"
    )

    @model_validator(mode="after")
    def _election_outlasts_heartbeats(self) -> Self:
        if self.election_timeout < 5 * self.heartbeat_interval:
            raise ValueError(
                f"election_timeout ({self.election_timeout:g}s) must be at least 5x heartbeat_interval "
                f"({self.heartbeat_interval:g}s): etcd refuses less"
            )
        return self


class Startup(Params):
    start_timeout: float = param(
        30.0,
        ge=1.0,
        le=300.0,
        unit=SECONDS,
        help="how long the members may take to serve clients (that is: to elect a leader)",
    )


class LoadWindow(Params):
    """How long a write load runs and how it is bounded."""

    duration: float = param(60.0, ge=1.0, le=600.0, unit=SECONDS, help="how long the write load runs")
    request_timeout: float = param(5.0, ge=0.5, le=60.0, unit=SECONDS, help="a write that takes longer fails (timeout)")
    workers: int = param(0, ge=0, le=8, help="load-generator processes; 0: as many as the rate and the cores call for")

    _quick: bool = PrivateAttr(False)

    @property
    def quick(self) -> bool:
        """Whether ``--quick`` shortened this run (set by ``shortened``, never read from a scenario)."""
        return self._quick

    def shortened(self, duration: float) -> Self:
        """The same settings for a ``--quick`` run: at most ``duration`` seconds of load."""
        copy = self.model_copy(update={"duration": min(self.duration, duration)})
        copy._quick = True
        return copy


class LoadShape(LoadWindow):
    """The write load: ``etcdctl check perf``'s shape (an open-loop rate from many clients)."""

    mode: LoadMode = param("open", help="open: the rate, judged; ceiling: closed loop, the most the cluster takes")
    rate: float = param(
        150.0, ge=1.0, le=100_000.0, unit=PER_SECOND, help="writes per second in open mode (the profile's)"
    )
    clients: int = param(50, ge=1, le=5000, help="concurrent clients (the profile's)")
    transport: Literal["grpc", "gateway"] = param(
        "grpc",
        help="grpc: etcd's client protocol, as etcdctl and benchmark put; gateway: the JSON gateway "
        "(one keep-alive connection per client; costs the member more CPU per write)",
    )
    channels: int = param(0, ge=0, le=64, help="gRPC channels per member and load process, shared by the clients; 0: 2")
    key_size: int = param(
        KEY_SIZE, ge=64, le=4096, unit=BYTES, help="bytes per key (random, under /talbench/<run-id>/)"
    )
    value_size: int = param(VALUE_SIZE, ge=1, le=1_048_576, unit=BYTES, help="bytes per value")

    @model_validator(mode="after")
    def _bounded_schedule(self) -> Self:
        if self.mode == "open" and self.rate * self.duration > MAX_OPEN_LOOP_WRITES:
            raise ValueError(f"rate x duration exceeds {MAX_OPEN_LOOP_WRITES // 1_000_000} million writes")
        return self


class WriteFloor(Params):
    min_requests: int = param(
        100,
        ge=1,
        le=10_000_000,
        coordinator_only=True,
        help="fewer completed writes: the latency figures are invalid, not judged",
    )


class LoadChoice(Params):
    """Which load, from where (the coordinator's choice: the jobs are told rate and clients)."""

    profile: Profile = param(
        "s",
        coordinator_only=True,
        help="load profile as etcdctl check perf --load: s (150 writes/s, 50 clients), m (1000/s, 200), "
        "l (8000/s, 500), xl (15000/s, 1000); custom: give rate and clients",
    )
    load_node: str | None = param(
        None,
        coordinator_only=True,
        min_length=1,
        max_length=253,
        help="the control plane that runs the load (default: the first by name)",
    )


class EtcdSettings(WriteFloor, Startup, MemberPorts, MemberTiming, LoadShape, LoadChoice):
    """The scenario's ``probes.etcd`` block: a scratch cluster of one member per control plane,
    written to from one of them."""

    @model_validator(mode="before")
    @classmethod
    def _profile_sets_the_rate(cls, raw: Any) -> Any:
        """A named profile supplies rate and clients (either may still be given); custom needs both."""
        if not isinstance(raw, dict):
            return raw
        profile = raw.get("profile", "s")
        if profile == "custom":
            if "rate" not in raw or "clients" not in raw:
                raise ValueError("profile custom needs rate (e.g. 500/s) and clients")
            return raw
        chosen = PROFILES.get(profile) if isinstance(profile, str) else None
        if chosen is None:
            return raw  # the profile field refuses it, naming the choices
        return {"rate": chosen.rate, "clients": chosen.clients, **raw}
