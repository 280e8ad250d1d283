"""The RTT probe and the echo responder over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from talbench.agents.app import ECHO
from talbench.agents.net.packet import (
    HEADER_SIZE,
    MAGIC,
    MAX_PACKET,
    REFLECTED,
    T2_KERNEL,
    RttPacket,
    decode,
    encode,
)
from talbench.agents.probe import ProbeParamError
from talbench.agents.probes.rtt.probe import PROBE, RttParams
from tests.agents.helpers import dead_udp_port

RTT_JOB = PROBE.jobs[0]
PEER = {"name": "a", "host": "127.0.0.1", "port": 9}


def parse(**params):
    return RTT_JOB.parse({"peers": [PEER], **params})


def test_defaults_and_time_limit():
    params = RTT_JOB.parse(
        {
            "peers": [PEER, {"name": "b", "host": "[::1]", "port": 8946}],
            "count": 100,
            "interval": 0.01,
            "warmup": 10,
            "jitter": 0.5,
            "stagger": 2,
            "timeout": 0.5,
        }
    )
    assert isinstance(params, RttParams) and params.peers[1].host == "::1"
    assert RTT_JOB.time_limit(params) == pytest.approx(2 + 110 * 0.01 * 1.5 + 0.5 + 5)


@pytest.mark.parametrize(
    "params,needle",
    [
        ({"count": 0}, "count"),
        ({"count": 100_001}, "count"),
        ({"count": True}, "count"),
        ({"interval": 0.0005}, "interval"),
        ({"interval": float("nan")}, "interval"),
        ({"warmup": 1001}, "warmup"),
        ({"timeout": 11}, "timeout"),
        ({"jitter": 1.5}, "jitter"),
        ({"stagger": -1}, "stagger"),
        ({"payload": 31}, "payload"),
        ({"payload": 1401}, "payload"),
        ({"peers": []}, "peers"),
        ({"peers": [PEER, dict(PEER, host="127.0.0.2")]}, "twice"),
        ({"peers": [dict(PEER, port=0)]}, "port"),
        ({"peers": [dict(PEER, port="80")]}, "port"),
        ({"peers": [{"name": "a", "host": "127.0.0.1"}]}, "port"),
        ({"peers": [dict(PEER, name="")]}, "name"),
        ({"peers": [dict(PEER, colour="red")]}, "colour"),
        ({"peers": [dict(PEER, name=f"p{i}") for i in range(1001)]}, "peers"),
        ({"peers": [dict(PEER, name=f"p{i}") for i in range(100)], "count": 100_000}, "packets"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_params_out_of_bounds_are_refused(params, needle):
    with pytest.raises(ProbeParamError, match=needle):
        RTT_JOB.parse({"peers": [PEER], **params})


def test_packet_round_trip():
    data = encode(RttPacket(7, 42, 123456789), 64)
    assert len(data) == 64 and data.startswith(MAGIC)
    assert decode(data) == RttPacket(7, 42, 123456789)
    assert decode(b"x" * 64) is None and decode(data[:20]) is None


async def test_rtt_between_agents_on_loopback(start_agent):
    a = await start_agent(node="cp1")
    b = await start_agent(node="cp2")
    c = await start_agent(node="cp3")
    params = {
        "peers": [
            {"name": "cp2", "host": "127.0.0.1", "port": b.port},
            {"name": "cp3", "host": "127.0.0.1", "port": c.port},
        ],
        "count": 50,
        "warmup": 5,
        "interval": 0.002,
        "jitter": 0.3,
        "stagger": 0.05,
        "timeout": 0.5,
        "payload": 200,
    }
    job = await a.wait((await a.submit("rtt", params))["id"])
    assert job["state"] == "done", job["error"]
    result = job["result"]
    assert result["count"] == 50 and result["warmup"] == 5 and result["interval_s"] == 0.002
    assert set(result["peers"]) == {"cp2", "cp3"}
    for name, other in (("cp2", b), ("cp3", c)):
        peer = result["peers"][name]
        assert peer["port"] == other.port and peer["host"] == "127.0.0.1"
        assert peer["sent"] == 50 and peer["received"] == 50 and peer["lost"] == 0
        assert peer["late"] == 0 and peer["duplicates"] == 0 and peer["errors"] == []
        samples = peer["samples_ns"]
        assert len(samples) == 50 and all(isinstance(s, int) and 0 < s < 200_000_000 for s in samples)
        # loopback: well under a millisecond normally; generous for a machine shared by others
        assert sorted(samples)[25] < 10_000_000
        # each responder answered warm-up and measured packets, nothing else
        assert other.app[ECHO].counters.answered == 55
    assert set(job["resources"]) >= {"cpu_process_percent", "cpu_system_percent", "cpus", "wall_s"}


async def test_a_peer_without_responder_is_all_lost_not_an_error(start_agent):
    a = await start_agent()
    params = {
        "peers": [{"name": "ghost", "host": "127.0.0.1", "port": dead_udp_port()}],
        "count": 20,
        "warmup": 2,
        "interval": 0.002,
        "timeout": 0.1,
        "stagger": 0,
    }
    job = await a.wait((await a.submit("rtt", params))["id"])
    assert job["state"] == "done", job["error"]
    ghost = job["result"]["peers"]["ghost"]
    assert ghost["sent"] == 20 and ghost["received"] == 0 and ghost["lost"] == 20 and ghost["samples_ns"] == []
    assert ghost["errors"] and "refused" in ghost["errors"][0].lower() and len(ghost["errors"]) <= 5


async def test_a_silent_peer_is_lost_after_the_timeout(start_agent):
    """A peer that swallows packets (no ICMP): lost, and the job ends about timeout_s after the last send."""
    a = await start_agent()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        params = {
            "peers": [{"name": "sink", "host": "127.0.0.1", "port": sink.getsockname()[1]}],
            "count": 5,
            "warmup": 0,
            "interval": 0.001,
            "timeout": 0.2,
            "stagger": 0,
        }
        job = await a.wait((await a.submit("rtt", params))["id"])
    peer = job["result"]["peers"]["sink"]
    assert peer["sent"] == 5 and peer["received"] == 0 and peer["lost"] == 5 and peer["errors"] == []
    assert 0.2 <= job["resources"]["wall_s"] < 1.5


async def test_late_and_duplicate_replies_are_not_samples(start_agent):
    """A hand-made responder: answers seq 0 twice, seq 1 after the timeout, drops seq 2."""
    a = await start_agent()
    loop = asyncio.get_running_loop()

    class Odd(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            seq = decode(data).seq
            if seq == 0:
                self.transport.sendto(data, addr)
                self.transport.sendto(data, addr)
            elif seq == 1:
                loop.call_later(0.15, self.transport.sendto, data, addr)  # late, but before the end
            elif seq >= 3:
                self.transport.sendto(data, addr)

    transport, _ = await loop.create_datagram_endpoint(Odd, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        params = {
            "peers": [{"name": "odd", "host": "127.0.0.1", "port": port}],
            "count": 5,
            "warmup": 0,
            "interval": 0.05,
            "jitter": 0,
            "timeout": 0.1,
            "stagger": 0,
        }
        job = await a.wait((await a.submit("rtt", params))["id"])
    finally:
        transport.close()
    peer = job["result"]["peers"]["odd"]
    assert peer["sent"] == 5 and peer["received"] == 3 and len(peer["samples_ns"]) == 3
    assert peer["lost"] == 2 and peer["late"] == 1 and peer["duplicates"] == 1


async def test_echo_answers_only_rtt_packets(start_agent):
    agent = await start_agent()
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", agent.port))
    try:
        transport.sendto(b"hello, not a probe packet")
        transport.sendto(MAGIC + bytes(MAX_PACKET + 1 - len(MAGIC)))  # too long
        transport.sendto(MAGIC + bytes(HEADER_SIZE - 1 - len(MAGIC)))  # too short for the stamps
        before = time.time_ns()
        packet = encode(RttPacket(1, 2, 3), 100)
        transport.sendto(packet)
        reply = await asyncio.wait_for(replies.get(), 2)
        after = time.time_ns()
        await asyncio.sleep(0.1)
        assert replies.empty()
    finally:
        transport.close()
    counters = agent.app[ECHO].counters
    assert counters.answered == 1 and counters.ignored == 3 and counters.errors == 0
    # the same packet back, with the reflector's receive and send stamps (same host: same clock)
    answered = decode(reply)
    assert answered is not None and len(reply) == 100 and reply[HEADER_SIZE:] == packet[HEADER_SIZE:]
    assert (answered.stream, answered.seq, answered.sent_ns) == (1, 2, 3)
    assert answered.flags == REFLECTED | T2_KERNEL  # the kernel stamped the arrival
    assert before <= answered.t2_ns <= answered.t3_ns <= after


async def exchange(target: tuple[str, int], family: int = socket.AF_INET) -> bytes | None:
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=target, family=family)
    try:
        transport.sendto(encode(RttPacket(5, 6, 7), 64))
        return await asyncio.wait_for(replies.get(), 1.0)
    except TimeoutError:
        return None
    finally:
        transport.close()


async def test_wildcard_echo_replies_from_the_address_it_was_asked_on():
    """A connected sender drops replies from another source address: asking 127.0.0.2 on a
    responder bound to 0.0.0.0 must be answered from 127.0.0.2, not 127.0.0.1."""
    from talbench.agents.net.echo import start_echo

    echo = await start_echo("0.0.0.0", 0)
    try:
        port = echo.address[1]
        assert await exchange(("127.0.0.1", port)) is not None
        assert await exchange(("127.0.0.2", port)) is not None
        assert echo.counters.answered == 2
    finally:
        echo.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_rtt_over_ipv6_loopback(start_agent):
    from talbench.agents.net.echo import start_echo

    a = await start_agent()
    echo = await start_echo("::1", 0)
    try:
        params = {
            "peers": [{"name": "v6", "host": "[::1]", "port": echo.address[1]}],
            "count": 10,
            "warmup": 1,
            "interval": 0.002,
            "stagger": 0,
        }
        job = await a.wait((await a.submit("rtt", params))["id"])
    finally:
        echo.close()
    peer = job["result"]["peers"]["v6"]
    assert peer["host"] == "::1" and peer["received"] == 10 and len(peer["samples_ns"]) == 10
