"""RTT probe: UDP request/response to every peer's echo responder, all peers at once.

Per peer: one connected UDP socket; ``warmup`` packets (discarded) then ``count`` measured ones,
``interval`` apart with +/- ``jitter`` relative randomisation, starting at a random offset in
[0, ``stagger``) so agents do not fire in lock-step.  Each packet carries a stream id, its
sequence number and its send stamp; the peer's echo responder writes its receive and send
stamps into the reply, and the RTT is TWAMP-light's (T4 - T1) - (T3 - T2) from kernel stamps
where Linux gives them (agents/probes/rtt/stream.py).  A round trip longer than ``timeout`` is counted
as late (and lost), not sampled.

Result per peer: raw RTT samples in send order (answered packets only) with the reflector's
dwell and the four stamps of each, how many stamps came from the kernel, sent, received,
lost (= count - received), late, duplicates, the first few socket errors (an ICMP port
unreachable shows up here as "Connection refused"), and the sender's worst lateness against
its schedule.  Summaries are the coordinator's business.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from pydantic import field_validator, model_validator

from talbench.agents.net.packet import HEADER_SIZE
from talbench.agents.net.timestamps import enable_sender_stamps
from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration
from talbench.agents.probes.rtt.stream import RECEIVE_BUFFER, RttStream

MAX_PEERS = 1000
MAX_PACKETS_TOTAL = 2_000_000  # peers * (warmup + count): bounds memory and result size
TIME_LIMIT_SLACK = 5.0


NAME = r"^[^\s\x00-\x1f\x7f]+$"  # printable, no blanks (node names, hosts)


class Peer(Params):
    name: str = param(help="the peer's node name", min_length=1, max_length=253, pattern=NAME)
    host: str = param(
        help="the peer's address (brackets around IPv6 allowed)", min_length=1, max_length=253, pattern=NAME
    )
    port: int = param(help="the peer's echo port (UDP)", ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _unbracketed(cls, host: str) -> str:
        return host.strip("[]")


class RttSettings(Params):
    """The scenario's ``probes.rtt`` block; the agent takes the same fields (less the
    coordinator's own) plus the peers."""

    count: int = param(300, ge=1, le=100_000, help="measured packets per direction and pair")
    interval: float = param(0.02, ge=0.001, le=10.0, unit=SECONDS, help="gap between packets of one stream")
    warmup: int = param(5, ge=0, le=1000, help="packets sent first and discarded")
    timeout: float = param(1.0, ge=0.01, le=10.0, unit=SECONDS, help="a later reply counts as lost")
    jitter: float = param(0.2, ge=0.0, le=1.0, help="relative randomisation of every gap (0.2: +/- 20 %)")
    stagger: float = param(1.0, ge=0.0, le=30.0, unit=SECONDS, help="each stream starts at a random offset within this")
    payload: int = param(64, ge=HEADER_SIZE, le=1400, help="UDP payload bytes per packet")
    min_samples: int = param(
        100, ge=1, le=100_000, coordinator_only=True, help="fewer replies than this: invalid, not judged"
    )
    max_peers: int = param(
        6,
        ge=1,
        le=1000,
        coordinator_only=True,
        help="most pairs per node beyond the control-plane pairs (all measured); the rest are sampled out",
    )
    raw_limit: int = param(
        500_000,
        ge=0,
        le=100_000_000,
        coordinator_only=True,
        help="most raw samples kept for pairs beyond the control planes'; past it they keep histograms",
    )


class RttParams(RttSettings):
    """One agent's job: the settings and the peers it owes."""

    peers: tuple[Peer, ...] = param(..., sequence=True, min_length=1, max_length=MAX_PEERS, help="peers to measure")

    @model_validator(mode="after")
    def _bounded(self) -> RttParams:
        names = [peer.name for peer in self.peers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"peer name {twice[0]!r} appears twice")
        total = len(self.peers) * (self.warmup + self.count)
        if total > MAX_PACKETS_TOTAL:
            raise ValueError(f"peers x (warmup + count) = {total} packets, more than {MAX_PACKETS_TOTAL}")
        return self


async def _connected_socket(peer: Peer) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(peer.host, peer.port, type=socket.SOCK_DGRAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


async def _measure_peer(peer: Peer, params: RttParams, rng: random.Random) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    try:
        sock = await _connected_socket(peer)
    except OSError as exc:  # includes name resolution failures
        unsent = RttStream(params, 0, None, kernel_stamps=False)
        unsent.note_error(exc)
        return unsent.result(peer.host, peer.port)
    stream = RttStream(params, rng.getrandbits(64), sock, kernel_stamps=enable_sender_stamps(sock))
    loop.add_reader(sock.fileno(), stream.on_readable)
    try:
        if params.stagger > 0:
            await asyncio.sleep(rng.uniform(0.0, params.stagger))
        next_at = loop.time()
        last_sent = next_at
        for seq in range(stream.total):
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            last_sent = loop.time()
            stream.send_lag_max = max(stream.send_lag_max, last_sent - next_at)
            stream.send(seq)
            next_at += params.interval * (1.0 + params.jitter * rng.uniform(-1.0, 1.0))
            if next_at < last_sent:  # fell behind (busy loop): resume the schedule from now
                next_at = last_sent
        stream.sending_done = True
        if stream.answered < stream.sent:
            remaining = last_sent + params.timeout - loop.time()
            if remaining > 0:
                try:
                    await asyncio.wait_for(stream.all_answered.wait(), remaining)
                except TimeoutError:
                    pass
        stream.on_readable()  # whatever arrived while this process waited for a CPU
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return stream.result(peer.host, peer.port)


def time_limit(params: RttSettings) -> float:
    sending = (params.warmup + params.count) * params.interval * (1.0 + params.jitter)
    return params.stagger + sending + params.timeout + TIME_LIMIT_SLACK


async def measure(params: RttParams, ctx: ProbeContext) -> dict[str, Any]:
    rng = random.Random()  # seeded from the OS: agents must not share a schedule
    results = await asyncio.gather(*(_measure_peer(peer, params, rng) for peer in params.peers))
    return job_result(params, {peer.name: result for peer, result in zip(params.peers, results, strict=True)})


def job_result(params: RttParams, peers: dict[str, Any]) -> dict[str, Any]:
    """The job's answer: the stream's shape and each peer's result."""
    return {
        "count": params.count,
        "warmup": params.warmup,
        "interval_s": params.interval,
        "jitter": params.jitter,
        "timeout_s": params.timeout,
        "payload_bytes": params.payload,
        "peers": peers,
    }


JOB: AgentJob[RttParams] = AgentJob("rtt", RttParams, measure, time_limit)

PROBE = ProbeDeclaration(
    name="rtt",
    summary="UDP round trips between node pairs, raw samples per direction",
    settings=RttSettings,
    jobs=(JOB,),
)
