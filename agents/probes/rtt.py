"""RTT probe: UDP request/response to every peer's echo responder, all peers at once.

Per peer: one connected UDP socket; ``warmup`` packets (discarded) then ``count`` measured ones,
``interval`` apart with +/- ``jitter`` relative randomisation, starting at a random offset in
[0, ``stagger``) so agents do not fire in lock-step.  Each packet carries a stream id, its
sequence number and its send time (time.perf_counter_ns); the RTT is the local receive time
minus that.  A reply later than ``timeout`` is counted as late (and lost), not sampled.

Result per peer: raw samples in send order (answered packets only), sent, received,
lost (= count - received), late, duplicates, the first few socket errors (an ICMP port
unreachable shows up here as "Connection refused"), and the sender's worst lateness against
its schedule.  Summaries are the coordinator's business.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from pydantic import field_validator, model_validator

from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import AgentJob, ProbeContext, ProbeDeclaration
from talbench.agents.rtt_packet import HEADER_SIZE, RttPacket, decode, encode

MAX_PEERS = 1000
MAX_PACKETS_TOTAL = 2_000_000  # peers * (warmup + count): bounds memory and result size
KEPT_ERRORS = 5
TIME_LIMIT_SLACK = 5.0

_UNSENT, _SENT, _ANSWERED, _LATE = 0, 1, 2, 3


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


# ---- one peer's stream ----------------------------------------------------------------------


class _Stream(asyncio.DatagramProtocol):
    """Send-side bookkeeping and the receive callback of one peer's connected socket."""

    def __init__(self, params: RttParams, stream_id: int) -> None:
        self.params = params
        self.stream_id = stream_id
        self.total = params.warmup + params.count
        self.timeout_ns = int(params.timeout * 1e9)
        self.sent_ns = [0] * self.total
        self.state = bytearray(self.total)
        self.rtt_ns: list[int | None] = [None] * self.total
        self.sent = 0  # all packets, warm-up included
        self.answered = 0  # packets with a reply, in time or late
        self.late = 0
        self.duplicates = 0
        self.foreign = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.send_lag_max = 0.0
        self.sending_done = False
        self.all_answered = asyncio.Event()

    def measured(self, seq: int) -> bool:
        return seq >= self.params.warmup

    def note_error(self, exc: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter_ns()
        packet = decode(data)
        if packet is None or packet.stream != self.stream_id or packet.seq >= self.total:
            self.foreign += 1
            return
        seq = packet.seq
        if self.state[seq] == _UNSENT or self.sent_ns[seq] != packet.sent_ns:
            self.foreign += 1
            return
        if self.state[seq] != _SENT:
            self.duplicates += self.measured(seq)
            return
        self.answered += 1
        rtt = now - packet.sent_ns
        if rtt > self.timeout_ns:
            self.state[seq] = _LATE
            self.late += self.measured(seq)
        else:
            self.state[seq] = _ANSWERED
            self.rtt_ns[seq] = rtt
        if self.sending_done and self.answered >= self.sent:
            self.all_answered.set()

    def error_received(self, exc: Exception) -> None:
        self.note_error(exc)

    def result(self, peer: Peer) -> dict[str, Any]:
        warmup = self.params.warmup
        samples = [r for r in self.rtt_ns[warmup:] if r is not None]
        return {
            "host": peer.host,
            "port": peer.port,
            "sent": sum(1 for s in self.state[warmup:] if s != _UNSENT),
            "received": len(samples),
            "samples_ns": samples,
            "lost": self.params.count - len(samples),
            "late": self.late,
            "duplicates": self.duplicates,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "send_lag_max_ms": round(self.send_lag_max * 1000.0, 3),
        }


async def _measure_peer(peer: Peer, params: RttParams, rng: random.Random) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stream = _Stream(params, rng.getrandbits(64))
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: stream, remote_addr=(peer.host, peer.port))
    except OSError as exc:  # includes name resolution failures
        stream.note_error(exc)
        return stream.result(peer)
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
            sent_ns = time.perf_counter_ns()
            stream.sent_ns[seq] = sent_ns
            stream.state[seq] = _SENT
            stream.sent += 1
            transport.sendto(encode(RttPacket(stream.stream_id, seq, sent_ns), params.payload))
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
    finally:
        transport.close()
    return stream.result(peer)


def time_limit(params: RttSettings) -> float:
    sending = (params.warmup + params.count) * params.interval * (1.0 + params.jitter)
    return params.stagger + sending + params.timeout + TIME_LIMIT_SLACK


async def measure(params: RttParams, ctx: ProbeContext) -> dict[str, Any]:
    rng = random.Random()  # seeded from the OS: agents must not share a schedule
    results = await asyncio.gather(*(_measure_peer(peer, params, rng) for peer in params.peers))
    return {
        "count": params.count,
        "warmup": params.warmup,
        "interval_s": params.interval,
        "jitter": params.jitter,
        "timeout_s": params.timeout,
        "payload_bytes": params.payload,
        "peers": {peer.name: result for peer, result in zip(params.peers, results, strict=True)},
    }


PROBE = ProbeDeclaration(
    name="rtt",
    summary="UDP round trips between node pairs, raw samples per direction",
    settings=RttSettings,
    jobs=(AgentJob("rtt", RttParams, measure, time_limit),),
)
