"""An agent killed hard (SIGKILL, OOM) leaves its kernel WireGuard test links, and their addresses,
in the node's network namespace; the next agent there removes them when it starts, and nothing
else: only links named as the tunnel job names them (``tb`` + 10 hex digits) and of a WireGuard
kind (kernel ``wireguard``, wireguard-go's ``tun``), and only when no other agent lives in that
namespace (the abstract-socket lock).  The root tests build a namespace of their own."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talbench.agents.main import claim_netns
from talbench.agents.probes.wireguard import links as wireguard
from talbench.agents.probes.wireguard.tunnel import link_name
from tests.agents.helpers import TOKEN, health_over_unix

LEFT = link_name("20261125-000000-dead", "cp1", "cp1-cp2")  # what a killed agent's tunnel job made


def _entry(name: str, kind: str | None, *addresses: str) -> dict:
    entry: dict = {
        "ifname": name,
        "addr_info": [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1])} for a in addresses],
    }
    if kind:
        entry["linkinfo"] = {"info_kind": kind}
    return entry


def test_the_tunnel_jobs_link_names_are_the_ones_looked_for():
    names = {link_name(f"run-{i}", node, "t") for i in range(50) for node in ("cp1", "w1")}
    assert all(wireguard.OUR_LINK.match(name) for name in names) and len(names) == 100
    assert wireguard.OUR_SOCKET.match(f"{LEFT}.sock")


def test_only_wireguard_links_named_like_test_links_are_leftovers():
    links = [
        _entry("lo", None, "127.0.0.1/8"),
        _entry(LEFT, "wireguard", "198.18.0.1/24"),
        _entry("tb0123456789", "tun"),  # wireguard-go's device
        _entry("tb0123456780", "veth"),  # the name fits, the kind does not: not ours
        _entry("tbdelay", "tun"),  # the lab's delay line
        _entry("kubespan", "wireguard", "fd00::1/64"),  # Talos' own WireGuard
        _entry("tb0123456789a", "wireguard"),  # one digit too many
        _entry("TB0123456789", "wireguard"),
    ]
    found = wireguard.leftovers_in(links)
    assert [(f.name, f.kind, f.addresses) for f in found] == [
        (LEFT, "wireguard", ("198.18.0.1/24",)),
        ("tb0123456789", "tun", ()),
    ]


def test_one_agent_per_network_namespace_holds_the_lock():
    name = b"\0talbench-test-" + secrets.token_hex(4).encode()  # not the real agents' lock
    first = claim_netns(name)
    assert first is not None
    try:
        assert claim_netns(name) is None  # a second agent in the same namespace
    finally:
        first.close()
    again = claim_netns(name)  # freed with its holder, however it ended
    assert again is not None
    again.close()


# ---- a real agent in a namespace the test makes ----------------------------------------------------


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"tb-lt-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def leave_links(ns: str) -> None:
    """What a killed agent leaves (a test tunnel with its address) and what is not ours."""
    # kernel WireGuard where there is some, else wireguard-go's TUN device: the same name either way
    if subprocess.run(["ip", "-n", ns, "link", "add", LEFT, "type", "wireguard"], capture_output=True).returncode:
        ip("-n", ns, "tuntap", "add", "dev", LEFT, "mode", "tun")
    ip("-n", ns, "address", "add", "198.18.77.1/24", "dev", LEFT)
    ip("-n", ns, "link", "set", LEFT, "up")
    ip("-n", ns, "tuntap", "add", "dev", "tbdelay", "mode", "tun")  # the lab's delay line
    ip("-n", ns, "tuntap", "add", "dev", "wg0", "mode", "tun")
    ip("-n", ns, "link", "add", "tb0123456780", "type", "veth", "peer", "name", "tbpeer")  # fits the name only
    ip("-n", ns, "address", "add", "198.18.78.1/24", "dev", "tb0123456780")


def links(ns: str) -> set[str]:
    return {line.split(": ")[1].split("@")[0] for line in ip("-n", ns, "-o", "link", "show").splitlines()}


async def run_agent(ns: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """Start an agent in ``ns``, wait until it serves, stop it; its log."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    sock = tmp_path / "agent.sock"
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "talbench.agents", "--listen", "127.0.0.1:18946"]
    proc = subprocess.Popen(
        [*argv, "--token-file", str(token), "--unix", str(sock), "--node", "n1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await health_over_unix(sock, timeout=60)
    except OSError as exc:
        proc.kill()
        raise AssertionError(f"the agent did not serve ({exc}): {proc.communicate(timeout=10)[1]}") from exc
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return proc, err


@pytest.mark.root("ip")
async def test_an_agent_removes_the_test_links_a_killed_agent_left_and_nothing_else(netns, tmp_path):
    leave_links(netns)
    assert {LEFT, "tbdelay", "wg0", "tb0123456780", "tbpeer"} <= links(netns)
    proc, log = await run_agent(netns, tmp_path)
    assert proc.returncode == 0, log
    left = links(netns)
    assert LEFT not in left
    assert {"tbdelay", "wg0", "tb0123456780", "tbpeer", "lo"} <= left  # not ours: untouched
    addresses = ip("-n", netns, "-o", "address", "show")
    assert "198.18.77.1" not in addresses and "198.18.78.1/24" in addresses
    assert f"removed test link {LEFT} (" in log and "198.18.77.1/24) an earlier agent left" in log


@pytest.mark.root("ip")
async def test_with_another_agent_alive_in_the_namespace_its_links_are_left_alone(netns, tmp_path):
    leave_links(netns)
    # another agent of this namespace: it holds the lock (and would still be using its links)
    hold = "import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(b'\\0talbench-agent'); print(1, flush=True); time.sleep(60)"
    holder = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", hold],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        proc, log = await run_agent(netns, tmp_path)
        assert proc.returncode == 0, log
        assert LEFT in links(netns)
        assert "another talbench agent runs in this network namespace" in log
    finally:
        holder.kill()
        holder.wait(10)
    started = time.monotonic()
    proc, log = await run_agent(netns, tmp_path)  # the holder is gone: the next agent cleans
    assert LEFT not in links(netns) and time.monotonic() - started < 30, log
