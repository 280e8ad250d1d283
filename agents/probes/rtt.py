"""RTT probe: UDP request/response to every peer's echo responder, all peers at once.

Per peer: one connected UDP socket; ``warmup`` packets (discarded) then ``count`` measured ones,
``interval_s`` apart with +/- ``jitter`` relative randomisation, starting at a random offset in
[0, ``stagger_s``) so agents do not fire in lock-step.  Each packet carries a stream id, its
sequence number and its send time (time.perf_counter_ns); the RTT is the local receive time
minus that.  A reply later than ``timeout_s`` is counted as late (and lost), not sampled.

Result per peer: raw samples in send order (answered packets only), sent, received,
lost (= count - received), late, duplicates, the first few socket errors (an ICMP port
unreachable shows up here as "Connection refused"), and the sender's worst lateness against
its schedule.  Summaries are the coordinator's business.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping

from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.rtt_packet import HEADER_SIZE, RttPacket, decode, encode

MAX_PEERS = 1000
MAX_PACKETS_TOTAL = 2_000_000  # peers * (warmup + count): bounds memory and result size
KEPT_ERRORS = 5
TIME_LIMIT_SLACK = 5.0

_UNSENT, _SENT, _ANSWERED, _LATE = 0, 1, 2, 3


@dataclass(frozen=True)
class Peer:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class RttParams:
    peers: tuple[Peer, ...]
    count: int = 200
    interval_s: float = 0.05
    warmup: int = 10
    timeout_s: float = 1.0
    jitter: float = 0.2
    stagger_s: float = 0.5
    payload_bytes: int = 64


# ---- parameter parsing ----------------------------------------------------------------------


def _int(raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int, label: str = "") -> int:
    value = raw.get(key, default)
    label = label or key
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeParamError(f"{label} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ProbeParamError(f"{label} must be between {lo} and {hi}, got {value}")
    return value


def _float(raw: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProbeParamError(f"{key} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ProbeParamError(f"{key} must be between {lo:g} and {hi:g}, got {value:g}")
    return float(value)


def _text(value: Any, what: str, max_len: int = 253) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable() or value != value.strip():
        raise ProbeParamError(f"{what} must be a non-empty printable string of at most {max_len} characters, got {value!r}")
    return value


def _peers(value: Any) -> tuple[Peer, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PEERS:
        raise ProbeParamError(f"peers must be a list of 1 to {MAX_PEERS} {{name, host, port}} objects")
    peers: list[Peer] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ProbeParamError(f"peers[{i}] must be an object with name, host and port")
        extra = sorted(set(item) - {"name", "host", "port"})
        if extra:
            raise ProbeParamError(f"peers[{i}]: unknown field(s) {', '.join(map(str, extra))}")
        name = _text(item.get("name"), f"peers[{i}].name")
        host = _text(item.get("host"), f"peers[{i}].host")
        if "port" not in item:
            raise ProbeParamError(f"peers[{i}].port is missing")
        port = _int(item, "port", 0, 1, 65535, label=f"peers[{i}].port")
        if name in seen:
            raise ProbeParamError(f"peer name {name!r} appears twice")
        seen.add(name)
        peers.append(Peer(name, host.strip("[]"), port))
    return tuple(peers)


def parse_params(raw: Mapping[str, Any]) -> RttParams:
    known = {"peers", "count", "interval_s", "warmup", "timeout_s", "jitter", "stagger_s", "payload_bytes"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProbeParamError(f"unknown parameter(s): {', '.join(map(str, unknown))}")
    if "peers" not in raw:
        raise ProbeParamError("peers is missing")
    d = RttParams(peers=())
    params = RttParams(
        peers=_peers(raw["peers"]),
        count=_int(raw, "count", d.count, 1, 100_000),
        interval_s=_float(raw, "interval_s", d.interval_s, 0.001, 10.0),
        warmup=_int(raw, "warmup", d.warmup, 0, 1000),
        timeout_s=_float(raw, "timeout_s", d.timeout_s, 0.01, 10.0),
        jitter=_float(raw, "jitter", d.jitter, 0.0, 1.0),
        stagger_s=_float(raw, "stagger_s", d.stagger_s, 0.0, 30.0),
        payload_bytes=_int(raw, "payload_bytes", d.payload_bytes, HEADER_SIZE, 1400),
    )
    total = len(params.peers) * (params.warmup + params.count)
    if total > MAX_PACKETS_TOTAL:
        raise ProbeParamError(f"peers x (warmup + count) = {total} packets, more than {MAX_PACKETS_TOTAL}")
    return params


# ---- one peer's stream ----------------------------------------------------------------------


class _Stream(asyncio.DatagramProtocol):
    """Send-side bookkeeping and the receive callback of one peer's connected socket."""

    def __init__(self, params: RttParams, stream_id: int) -> None:
        self.params = params
        self.stream_id = stream_id
        self.total = params.warmup + params.count
        self.timeout_ns = int(params.timeout_s * 1e9)
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
        if params.stagger_s > 0:
            await asyncio.sleep(rng.uniform(0.0, params.stagger_s))
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
            transport.sendto(encode(RttPacket(stream.stream_id, seq, sent_ns), params.payload_bytes))
            next_at += params.interval_s * (1.0 + params.jitter * rng.uniform(-1.0, 1.0))
            if next_at < last_sent:  # fell behind (busy loop): resume the schedule from now
                next_at = last_sent
        stream.sending_done = True
        if stream.answered < stream.sent:
            remaining = last_sent + params.timeout_s - loop.time()
            if remaining > 0:
                try:
                    await asyncio.wait_for(stream.all_answered.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
    finally:
        transport.close()
    return stream.result(peer)


class RttProbe:
    name = "rtt"

    def parse(self, params: Mapping[str, Any]) -> RttParams:
        return parse_params(params)

    def time_limit(self, params: RttParams) -> float:
        sending = (params.warmup + params.count) * params.interval_s * (1.0 + params.jitter)
        return params.stagger_s + sending + params.timeout_s + TIME_LIMIT_SLACK

    async def run(self, params: RttParams, ctx: ProbeContext) -> dict[str, Any]:
        rng = random.Random()  # seeded from the OS: agents must not share a schedule
        results = await asyncio.gather(*(_measure_peer(peer, params, rng) for peer in params.peers))
        return {
            "count": params.count,
            "warmup": params.warmup,
            "interval_s": params.interval_s,
            "jitter": params.jitter,
            "timeout_s": params.timeout_s,
            "payload_bytes": params.payload_bytes,
            "peers": {peer.name: result for peer, result in zip(params.peers, results)},
        }
