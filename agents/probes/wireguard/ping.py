"""The wireguard probe's ICMP RTT job (``wireguard.ping``): ICMP echo to a few targets (the peer's
node address, its tunnel address), the kernel's echo reply as the reflector.

Why not the RTT probe's UDP echo responder here: through a userspace WireGuard (wireguard-go) the
reply has to be carried by the tunnel's processes again, and a user-space reflector answers only
after its dwell (a wake-up).  TWAMP-light subtracts the dwell, but
not what it causes: meanwhile the tunnel's processes went idle, and the reply pays their wake-up
on both ends, counted as the tunnel's (it grows with the dwell; the figures:
docs/measurements.md, "WireGuard").  The kernel answers an echo request at once, as it does for ping: with
wireguard-go the coordinator measures both paths this way (bench/probes/wireguard/pair.py).

The targets are measured one after the other, each from a thread that only sleeps and sends
while its requests are out (``_ping`` says why).  Stamps: T1 is the kernel's transmit stamp (SO_TIMESTAMPING, the error queue; the clock read just
before the send where the kernel gives none), T4 the kernel's receive stamp; RTT = T4 - T1, no
dwell (the kernel's reply is immediate).  Needs a raw ICMP socket (root or CAP_NET_RAW): without
one the job is unavailable and the coordinator uses the UDP echo responder instead.  IPv4 only
(the test tunnels' addresses are IPv4).
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import threading
import time
from typing import Any

from talbench.agents.net.timestamps import (
    ANCILLARY_SPACE,
    MSG_ERRQUEUE,
    SCM_TSTAMP_SND,
    enable_sender_stamps,
    receive_stamp,
    transmit_stamp,
)
from talbench.agents.params import SECONDS, Params, param
from talbench.agents.probe import ProbeContext, ProbeUnavailable
from talbench.agents.probes.wireguard.iperf import IpAddress

ECHO_REQUEST, ECHO_REPLY = 8, 0
ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, id, sequence
TOKEN = struct.Struct("!QQ")  # the stream's token, the sender's clock read (matches a reply)
PAYLOAD = 56  # ping's default: the same packet size as the by-hand reference
BATCH = 256
KEPT_ERRORS = 5
TIME_LIMIT_SLACK = 5.0
RECEIVE_BUFFER = 4 << 20  # replies and transmit stamps wait here until the last request is sent
SO_RCVBUFFORCE = 33


class PingTarget(Params):
    name: str = param(pattern=r"^[a-z0-9-]{1,40}$", help="the path's name in the result (node, tunnel)")
    host: IpAddress = param(max_length=64, help="the IPv4 address echoed")


class PingParams(Params):
    count: int = param(300, ge=1, le=100_000, help="measured echo requests per target")
    interval: float = param(0.01, ge=0.001, le=1.0, unit=SECONDS, help="gap between requests to one target")
    warmup: int = param(10, ge=0, le=1000, help="requests sent first and discarded")
    timeout: float = param(1.0, ge=0.01, le=10.0, unit=SECONDS, help="a later reply counts as lost")
    jitter: float = param(0.2, ge=0.0, le=1.0, help="relative randomisation of every gap (0.2: +/- 20 %)")
    targets: tuple[PingTarget, ...] = param(
        ..., sequence=True, min_length=1, max_length=4, help="the addresses echoed, one after the other"
    )


def time_limit(params: PingParams) -> float:
    sending = (params.warmup + params.count) * params.interval * (1.0 + params.jitter)
    return len(params.targets) * (sending + params.timeout) + TIME_LIMIT_SLACK


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, token: int, sent_ns: int) -> bytes:
    body = TOKEN.pack(token, sent_ns).ljust(PAYLOAD, b"\0")
    header = ICMP_HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq & 0xFFFF)
    return ICMP_HEADER.pack(ECHO_REQUEST, 0, checksum(header + body), ident, seq & 0xFFFF) + body


def parse_reply(packet: bytes) -> tuple[int, int, int, int] | None:
    """(id, sequence, token, sender's clock read) of an echo reply (IPv4 header first), else None."""
    if len(packet) < 20:
        return None
    start = (packet[0] & 0x0F) * 4
    icmp = packet[start:]
    if len(icmp) < ICMP_HEADER.size + TOKEN.size:
        return None
    kind, _code, _sum, ident, seq = ICMP_HEADER.unpack_from(icmp)
    if kind != ECHO_REPLY:
        return None
    token, sent_ns = TOKEN.unpack_from(icmp, ICMP_HEADER.size)
    return ident, seq, token, sent_ns


class PingStream:
    """One target: the raw socket's sends, transmit stamps and replies."""

    def __init__(self, params: PingParams, host: str, sock: socket.socket, rng: random.Random) -> None:
        self.params, self.host, self.sock = params, host, sock
        self.ident, self.token = rng.getrandbits(16), rng.getrandbits(64)
        self.kernel_stamps = enable_sender_stamps(sock)
        total = params.warmup + params.count
        self.total = total
        self.t1_user = [0] * total
        self.t1_kernel = [0] * total
        self.t4 = [0] * total
        self.t4_kernel = bytearray(total)
        self.send_order: list[int] = []
        self.answered = self.duplicates = self.error_count = 0
        self.errors: list[str] = []
        self.send_lag_max = 0.0

    def note_error(self, exc: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def send(self, seq: int) -> None:
        stamp = time.time_ns()
        self.t1_user[seq] = stamp
        try:
            self.sock.send(echo_request(self.ident, seq, self.token, stamp))
        except OSError as exc:
            self.note_error(exc)
            return
        self.send_order.append(seq)

    def drain(self) -> None:
        """Read the transmit stamps and the replies queued so far (non-blocking)."""
        if self.kernel_stamps:
            for _ in range(BATCH):
                try:
                    _, ancdata, _, _ = self.sock.recvmsg(1, ANCILLARY_SPACE, MSG_ERRQUEUE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self.note_error(exc)
                    break
                stamp = transmit_stamp(ancdata)
                if stamp is not None and stamp.key < len(self.send_order) and stamp.kind == SCM_TSTAMP_SND:
                    self.t1_kernel[self.send_order[stamp.key]] = stamp.ns
        for _ in range(BATCH):
            try:
                data, ancdata, _, _ = self.sock.recvmsg(2048, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.note_error(exc)
                return
            kernel = receive_stamp(ancdata)
            self._on_reply(data, kernel or time.time_ns(), kernel is not None)

    def _on_reply(self, data: bytes, t4: int, kernel: bool) -> None:
        reply = parse_reply(data)
        if reply is None:
            return
        ident, seq16, token, sent_ns = reply
        if ident != self.ident or token != self.token:
            return  # another process's echo, or not ours
        seq = next((s for s in (seq16, seq16 + 65536) if s < self.total and self.t1_user[s] == sent_ns), None)
        if seq is None:
            return
        if self.t4[seq]:
            self.duplicates += seq >= self.params.warmup
            return
        self.t4[seq], self.t4_kernel[seq] = t4, kernel
        self.answered += 1

    def result(self) -> dict[str, Any]:
        timeout_ns = int(self.params.timeout * 1e9)
        samples: list[int] = []
        late = t1_kernel = t4_kernel = 0
        for seq in range(self.params.warmup, self.total):
            if not self.t4[seq]:
                continue
            kernel = self.t1_user[seq] <= self.t1_kernel[seq] <= self.t4[seq]
            rtt = self.t4[seq] - (self.t1_kernel[seq] if kernel else self.t1_user[seq])
            if rtt > timeout_ns:
                late += 1
                continue
            samples.append(rtt)
            t1_kernel += kernel
            t4_kernel += self.t4_kernel[seq]
        sent = sum(1 for seq in self.send_order if seq >= self.params.warmup)
        return {
            "host": self.host,
            "reflector": "icmp",
            "sent": sent,
            "received": len(samples),
            "samples_ns": samples,
            "stamps": {"t1_kernel": t1_kernel, "t4_kernel": t4_kernel},
            "lost": self.params.count - len(samples),
            "late": late,
            "duplicates": self.duplicates,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "send_lag_max_ms": round(self.send_lag_max * 1000.0, 3),
        }


def _raw_socket(host: str) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError as exc:
        raise ProbeUnavailable(f"no raw ICMP socket ({exc}): needs root or CAP_NET_RAW") from exc
    try:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.connect((host, 0))  # replies from this host only
    except OSError:
        sock.close()
        raise
    return sock


def _ping(params: PingParams, target: PingTarget, seed: int, stop: threading.Event) -> dict[str, Any]:
    """One target, in a thread of its own: while requests go out this process only sleeps, sends
    and sleeps again (as ping does).  Replies and transmit stamps are read after the last request
    (their kernel stamps do not move meanwhile): a process that wakes for them while the packets
    are in flight takes a CPU the tunnel's own processes need, and on a small machine with a
    userspace tunnel that shows in the RTT."""
    sock = _raw_socket(target.host)
    try:
        stream = PingStream(params, target.host, sock, random.Random(seed))
        rng = random.Random(seed + 1)
        next_at = last_sent = time.monotonic()
        for seq in range(stream.total):
            if stop.is_set():
                break
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            last_sent = time.monotonic()
            stream.send_lag_max = max(stream.send_lag_max, last_sent - next_at)
            stream.send(seq)
            next_at = max(next_at + params.interval * (1.0 + params.jitter * rng.uniform(-1.0, 1.0)), last_sent)
        give_up = last_sent + params.timeout
        while not stop.is_set():
            stream.drain()
            left = give_up - time.monotonic()
            if stream.answered >= len(stream.send_order) or left <= 0:
                break
            select.select([sock], [], [], min(0.05, left))
        stream.drain()
    finally:
        sock.close()
    return stream.result()


async def measure(params: PingParams, ctx: ProbeContext) -> dict[str, Any]:
    stop = threading.Event()
    seed = random.SystemRandom().getrandbits(62)
    results: list[dict[str, Any]] = []
    try:
        for index, target in enumerate(params.targets):  # one path at a time, as ping by hand
            results.append(await asyncio.to_thread(_ping, params, target, seed + 2 * index, stop))
    except asyncio.CancelledError:
        stop.set()  # the thread ends within one interval
        raise
    return {
        "count": params.count,
        "warmup": params.warmup,
        "interval_s": params.interval,
        "payload_bytes": PAYLOAD,
        "targets": {t.name: r for t, r in zip(params.targets, results, strict=True)},
    }
