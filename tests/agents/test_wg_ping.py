"""The wireguard probe's ICMP RTT job: packets, the job's bounds, and real echoes from the kernel."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.wireguard.ping import (
    ECHO_REPLY,
    PAYLOAD,
    PingParams,
    checksum,
    echo_request,
    parse_reply,
    time_limit,
)
from talbench.agents.probes.wireguard.probe import PING_JOB, PROBE

IPV4_HEADER = bytes([0x45]) + bytes(19)


def as_reply(request: bytes) -> bytes:
    """What the kernel sends back: the same id, sequence and payload, type 0, behind an IP header."""
    body = bytes([ECHO_REPLY, 0, 0, 0]) + request[4:]
    return IPV4_HEADER + body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def test_the_job_is_declared_by_the_wireguard_probe() -> None:
    assert PING_JOB.name == "wireguard.ping" and PING_JOB in PROBE.jobs


def test_an_echo_request_is_ping_sized_with_a_valid_checksum() -> None:
    packet = echo_request(0x1234, 70000, 0xDEADBEEF, 123456789)
    assert len(packet) == 8 + PAYLOAD
    assert checksum(packet) == 0  # a valid ICMP checksum sums to zero
    assert packet[0] == 8 and struct.unpack("!HH", packet[4:8]) == (0x1234, 70000 & 0xFFFF)


def test_a_reply_is_matched_by_id_sequence_token_and_stamp() -> None:
    request = echo_request(7, 3, 99, 555)
    assert parse_reply(as_reply(request)) == (7, 3, 99, 555)
    assert parse_reply(IPV4_HEADER + request) is None  # an echo request is not a reply
    assert parse_reply(IPV4_HEADER[:10]) is None


def test_params_are_bounded_and_the_time_limit_follows_them() -> None:
    params = PING_JOB.parse({"count": 100, "interval": 0.01, "targets": [{"name": "tunnel", "host": "198.18.0.2"}]})
    assert isinstance(params, PingParams) and params.warmup == 10
    assert time_limit(params) == pytest.approx(110 * 0.01 * 1.2 + 1.0 + 5.0)
    with pytest.raises(ProbeParamError):
        PING_JOB.parse({"targets": [{"name": "x", "host": "node-name"}]})  # addresses only
    with pytest.raises(ProbeParamError):
        PING_JOB.parse({"targets": []})


@pytest.mark.root
async def test_the_kernel_echoes_loopback_with_kernel_stamps(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (raw ICMP socket)")
    ctx = ProbeContext("n1", "ping-test", tmp_path, "127.0.0.1", 8946, Cleanups())
    params = PING_JOB.parse(
        {"count": 50, "interval": 0.002, "warmup": 2, "targets": [{"name": "node", "host": "127.0.0.1"}]}
    )
    result = (await PING_JOB.run(params, ctx))["targets"]["node"]
    assert result["reflector"] == "icmp" and result["sent"] == 50
    assert result["received"] >= 45 and len(result["samples_ns"]) == result["received"]
    assert all(0 < ns < 50_000_000 for ns in result["samples_ns"])
    assert result["stamps"]["t1_kernel"] == result["stamps"]["t4_kernel"] == result["received"]
