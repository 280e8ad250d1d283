"""The wire's own account of round trips, for the RTT benchmark: a packet capture with the
kernel's timestamps at both ends of a path, inside the lab's namespaces.

    python benchmarks/wire_capture.py SECONDS OUT.jsonl PORT

run inside a node's namespace (``ip netns exec``) captures, on every interface there, each IPv4
UDP packet to or from PORT that carries the RTT probe's header, and each ICMP echo request and
reply: one JSON line per packet with the kernel's stamp (AF_PACKET, SO_TIMESTAMPNS: the receive
stamp for packets coming in, the transmit stamp ``dev_queue_xmit_nit`` gives outgoing ones), its
direction and its identity (the RTT stream and sequence number, or the ICMP id and sequence).
``round_trips`` then pairs a request leaving the sender with its reply coming back (the wire's
RTT, no socket or process in it) and the reflector's request-in with its reply-out (the
reflector's dwell on the wire).  Run in the lab's router namespace, it also sees each packet
enter the delay line's TUN device and come back out of it: ``holds`` gives how long the delay
line held each one (its own precision, packet by packet and flow by flow).  Bounded: it stops
after SECONDS.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from talbench.agents.net import timestamps

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
RTT_MAGIC = b"TBRTT\x00v2"


def _identity(ip: bytes, port: int) -> tuple[str, str] | None:
    """(kind, id) of an RTT probe packet or an ICMP echo, else None."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    header = (ip[0] & 0x0F) * 4
    payload = ip[header:]
    if ip[9] == socket.IPPROTO_UDP and len(payload) >= 8 + 24:
        source, destination = struct.unpack("!HH", payload[:4])
        data = payload[8:]
        if port in (source, destination) and data[:8] == RTT_MAGIC:
            stream, seq = struct.unpack("!QQ", data[8:24])
            return ("udp-request" if destination == port else "udp-reply", f"{stream}:{seq}")
    if ip[9] == socket.IPPROTO_ICMP and len(payload) >= 8 and payload[0] in (0, 8):
        ident, seq = struct.unpack("!HH", payload[4:8])
        return ("icmp-request" if payload[0] == 8 else "icmp-reply", f"{ident}:{seq}")
    return None


def capture(seconds: float, out: Path, port: int) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    timestamps.enable_receive_stamps(sock)
    count = 0
    end = time.monotonic() + seconds
    with out.open("w") as lines:
        while (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], min(left, 0.5))[0]:
                continue
            data, ancillary, _, address = sock.recvmsg(2048, 64)
            if address[1] != ETH_P_IP:
                continue
            stamp = timestamps.receive_stamp(ancillary)
            # a TUN device (the delay line's) hands up bare IP; an Ethernet link a 14-byte header
            ip = data[14:] if address[3] == 1 else data
            found = _identity(ip, port)
            if stamp is None or found is None:
                continue
            kind, ident = found
            out_going = address[2] == PACKET_OUTGOING
            lines.write(json.dumps({"ns": stamp, "if": address[0], "out": out_going, "kind": kind, "id": ident}) + "\n")
            count += 1
    sock.close()
    return count


@dataclass(frozen=True)
class WireRoundTrips:
    rtt_ms: tuple[float, ...]  # request out -> reply in, at the sender's interface
    dwell_ms: tuple[float, ...]  # request in -> reply out, at the reflector's interface
    net_ms: tuple[float, ...]  # rtt - dwell per packet: what the path itself took


def _first(rows: Iterable[Mapping[str, object]], kind: str, out_going: bool) -> dict[str, int]:
    found: dict[str, int] = {}
    for row in rows:
        if row["kind"] == kind and row["out"] is out_going:
            found.setdefault(str(row["id"]), int(str(row["ns"])))
    return found


def round_trips(sender: Path, reflector: Path, protocol: str) -> WireRoundTrips:
    """Per packet of ``protocol`` (udp, icmp) seen at both ends: the wire's RTT, dwell and net."""
    sent_rows = [json.loads(line) for line in sender.read_text().splitlines()]
    seen_rows = [json.loads(line) for line in reflector.read_text().splitlines()]
    request_out = _first(sent_rows, f"{protocol}-request", True)
    reply_in = _first(sent_rows, f"{protocol}-reply", False)
    request_in = _first(seen_rows, f"{protocol}-request", False)
    reply_out = _first(seen_rows, f"{protocol}-reply", True)
    rtt, dwell, net = [], [], []
    for ident in sorted(request_out.keys() & reply_in.keys() & request_in.keys() & reply_out.keys()):
        r = (reply_in[ident] - request_out[ident]) / 1e6
        d = (reply_out[ident] - request_in[ident]) / 1e6
        rtt.append(r)
        dwell.append(d)
        net.append(r - d)
    return WireRoundTrips(tuple(rtt), tuple(dwell), tuple(net))


def holds(router: Path, device: str, protocol: str) -> tuple[float, ...]:
    """Milliseconds the delay line held each packet of ``protocol`` (udp, icmp), either way: from
    the kernel handing it to ``device`` (the TUN) to the delay line writing it back."""
    into: dict[str, int] = {}
    back: dict[str, int] = {}
    for line in router.read_text().splitlines():
        row = json.loads(line)
        if row["if"] == device and str(row["kind"]).startswith(f"{protocol}-"):
            (into if row["out"] else back).setdefault(f"{row['kind']}/{row['id']}", int(row["ns"]))
    return tuple((back[key] - into[key]) / 1e6 for key in sorted(into.keys() & back.keys()))


if __name__ == "__main__":
    sys.exit(0 if capture(float(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])) >= 0 else 1)
