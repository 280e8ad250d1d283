"""One RTT stream: the sender's side of TWAMP-light towards one peer's echo responder.

Four stamps per packet: T1 when it left (the kernel's transmit stamp; the sender's clock read
just before the send where the kernel gives none), T2 and T3 when the reflector received it and
sent the reply (written into the reply by the peer's echo responder), T4 when the reply arrived
(the kernel's receive stamp).  RTT = (T4 - T1) - (T3 - T2): each host differences only its own
clock, and neither end's scheduling delay counts as network: a late wake-up of this process
moves neither T1 nor T4, and the reflector's wait for a CPU is its dwell (T3 - T2), subtracted.

A reply is matched to its request by stream id, sequence number and the sender's send stamp
(echoed unchanged).  Replies are kept as they come; what counts as late (a round trip longer
than ``timeout``) is decided once, in ``result``, from the stamps rather than from when this
process got round to reading them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Protocol

from talbench.agents.net.packet import REFLECTED, T2_KERNEL, RttPacket, decode, encode
from talbench.agents.net.timestamps import (
    ANCILLARY_SPACE,
    MSG_ERRQUEUE,
    SCM_TSTAMP_SND,
    receive_stamp,
    transmit_stamp,
)

KEPT_ERRORS = 5
BATCH = 256  # messages read per readable event before yielding to the loop
RECEIVE_BUFFER = 1 << 20  # replies queued while this process waits for a CPU (capped by rmem_max)
_UNSENT, _SENT, _ANSWERED = 0, 1, 2


class StreamSettings(Protocol):
    """What a stream reads of the probe's parameters (agents/probes/rtt/probe.py RttParams)."""

    @property
    def warmup(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def payload(self) -> int: ...


class RttStream:
    """Send-side bookkeeping and the receive path of one peer's connected socket."""

    def __init__(
        self, settings: StreamSettings, stream_id: int, sock: socket.socket | None, kernel_stamps: bool
    ) -> None:
        self.settings = settings
        self.stream_id = stream_id
        self.sock = sock
        self.kernel_stamps = kernel_stamps
        total = settings.warmup + settings.count
        self.total = total
        self.state = bytearray(total)
        self.t1_user = [0] * total  # the clock read just before the send (also the match stamp)
        self.t1_kernel = [0] * total
        self.t1_kind = [-1] * total
        self.t2 = [0] * total
        self.t3 = [0] * total
        self.t4 = [0] * total
        self.reply_flags = bytearray(total)
        self.t4_kernel = bytearray(total)
        self.send_order: list[int] = []  # the kernel's send counter -> sequence number
        self.sent = 0  # packets handed to the kernel, warm-up included
        self.answered = 0
        self.duplicates = 0
        self.foreign = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.send_lag_max = 0.0
        self.sending_done = False
        self.all_answered = asyncio.Event()

    def note_error(self, exc: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def send(self, seq: int) -> None:
        assert self.sock is not None
        stamp = time.time_ns()
        self.t1_user[seq] = stamp
        self.state[seq] = _SENT
        try:
            self.sock.send(encode(RttPacket(self.stream_id, seq, stamp), self.settings.payload))
        except OSError as exc:  # a full buffer, an ICMP error reported on this socket: a lost packet
            self.note_error(exc)
            return
        self.send_order.append(seq)
        self.sent += 1

    # ---- receive path (the event loop's reader callback) -------------------------------------

    def on_readable(self) -> None:
        if self.sock is None:
            return
        if self.kernel_stamps:
            self._read_error_queue()
        self._read_replies()

    def _read_error_queue(self) -> None:
        assert self.sock is not None
        for _ in range(BATCH):
            try:
                _, ancdata, _, _ = self.sock.recvmsg(1, ANCILLARY_SPACE, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.note_error(exc)
                return
            stamp = transmit_stamp(ancdata)
            if stamp is None or stamp.key >= len(self.send_order):
                continue
            seq = self.send_order[stamp.key]
            if self.t1_kind[seq] != SCM_TSTAMP_SND:  # the driver's stamp beats the scheduler's
                self.t1_kernel[seq] = stamp.ns
                self.t1_kind[seq] = stamp.kind

    def _read_replies(self) -> None:
        assert self.sock is not None
        for _ in range(BATCH):
            try:
                data, ancdata, _, _ = self.sock.recvmsg(2048, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ECONNREFUSED: the peer's port is closed
                self.note_error(exc)
                return
            kernel_t4 = receive_stamp(ancdata)
            self._on_reply(data, kernel_t4 or time.time_ns(), kernel_t4 is not None)

    def _on_reply(self, data: bytes, t4: int, t4_kernel: bool) -> None:
        packet = decode(data)
        if packet is None or packet.stream != self.stream_id or packet.seq >= self.total:
            self.foreign += 1
            return
        seq = packet.seq
        if self.state[seq] == _UNSENT or self.t1_user[seq] != packet.sent_ns:
            self.foreign += 1
            return
        if self.state[seq] == _ANSWERED:
            self.duplicates += seq >= self.settings.warmup
            return
        self.state[seq] = _ANSWERED
        self.answered += 1
        self.t2[seq], self.t3[seq], self.reply_flags[seq] = packet.t2_ns, packet.t3_ns, packet.flags
        self.t4[seq], self.t4_kernel[seq] = t4, t4_kernel
        if self.sending_done and self.answered >= self.sent:
            self.all_answered.set()

    # ---- the result -------------------------------------------------------------------------

    def _t1(self, seq: int) -> tuple[int, bool]:
        """T1, and whether it is the kernel's: a kernel stamp must fall between the clock read
        before the send and the reply's arrival, else (a send the kernel never stamped) the
        clock read stands."""
        kernel = self.t1_kernel[seq]
        if kernel and self.t1_user[seq] <= kernel <= self.t4[seq]:
            return kernel, True
        return self.t1_user[seq], False

    def result(self, host: str, port: int) -> dict[str, Any]:
        warmup, timeout_ns = self.settings.warmup, int(self.settings.timeout * 1e9)
        samples: list[int] = []
        dwells: list[int] = []
        t1s: list[int] = []
        t2s: list[int] = []
        late = unusable = t1_kernel = t2_kernel = t4_kernel = reflected = 0
        for seq in range(warmup, self.total):
            if self.state[seq] != _ANSWERED:
                continue
            t1, kernel = self._t1(seq)
            flags = self.reply_flags[seq]
            dwell = self.t3[seq] - self.t2[seq] if flags & REFLECTED else 0
            rtt = self.t4[seq] - t1 - dwell
            if dwell < 0 or rtt < 0:  # a clock stepped between two stamps
                unusable += 1
                continue
            if rtt > timeout_ns:
                late += 1
                continue
            samples.append(rtt)
            dwells.append(dwell)
            t1s.append(t1)
            t2s.append(self.t2[seq])
            t1_kernel += kernel
            t2_kernel += bool(flags & T2_KERNEL)
            t4_kernel += self.t4_kernel[seq]
            reflected += bool(flags & REFLECTED)
        t1_base = t1s[0] if t1s else 0
        t2_base = t2s[0] if t2s else 0
        return {
            "host": host,
            "port": port,
            "sent": sum(1 for s in self.state[warmup:] if s != _UNSENT),
            "received": len(samples) + unusable,
            "samples_ns": samples,
            "dwell_ns": dwells,
            # the four stamps: T1 = t1_base_ns + t1_ns[i], T2 = t2_base_ns + t2_ns[i],
            # T3 = T2 + dwell_ns[i], T4 = T1 + samples_ns[i] + dwell_ns[i]
            "t1_base_ns": t1_base,
            "t1_ns": [t - t1_base for t in t1s],
            "t2_base_ns": t2_base,
            "t2_ns": [t - t2_base for t in t2s],
            "stamps": {"t1_kernel": t1_kernel, "t2_kernel": t2_kernel, "t4_kernel": t4_kernel, "reflected": reflected},
            "lost": self.settings.count - len(samples) - unusable,
            "late": late,
            "unusable": unusable,
            "duplicates": self.duplicates,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "send_lag_max_ms": round(self.send_lag_max * 1000.0, 3),
        }
