"""Path MTU probe, agent side: declared bounds, the search on loopback, and real path MTU
discovery through a router namespace whose far link is narrower (needs root)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap

import pytest

from talbench.agents.net.echo import start_echo
from talbench.agents.params import ParamError
from talbench.agents.probes.mtu.probe import PROBE, MtuParams

JOB = PROBE.jobs[0]


def peer(port: int, name: str = "p", host: str = "127.0.0.1") -> dict[str, object]:
    return {"name": name, "host": host, "port": port}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"low": 500}, "low"),
        ({"high": 9000}, "high"),
        ({"attempts": 0}, "attempts"),
        ({"timeout": "fast"}, "timeout"),
        ({"bogus": 1}, "bogus"),
        ({"peers": []}, "peers"),
    ],
)
def test_bad_parameters_are_one_line_naming_the_field(params, field):
    with pytest.raises(ParamError) as caught:
        JOB.parse({"peers": [peer(9)], **params})
    message = str(caught.value)
    assert field in message and "\n" not in message


def test_time_limit_bounds_the_search():
    params = JOB.parse({"peers": [peer(9, f"n{i}") for i in range(40)], "timeout": 0.1, "attempts": 2})
    assert isinstance(params, MtuParams)
    # 3 rounds of 16 peers, at most 10 sizes each (log2(220) + 2), 2 x 0.1 s per size
    assert JOB.time_limit(params) == pytest.approx(3 * 10 * 2 * 0.1 + 5.0)


async def test_loopback_reaches_the_ceiling_and_a_dead_peer_has_no_figure(tmp_path):
    echo = await start_echo("127.0.0.1", 0)
    try:
        params = JOB.parse({"peers": [peer(echo.address[1], "live"), peer(9, "dead")], "timeout": 0.05})
        result = await JOB.run(params, None)  # type: ignore[arg-type]  # the probe reads no context
    finally:
        echo.close()
    live, dead = result["peers"]["live"], result["peers"]["dead"]
    assert live["mtu"] == 1500 and live["ceiling"] == 1500 and live["error"] is None
    assert [size for size, _ in live["tried"]] == [1280, 1500]
    assert dead["mtu"] is None and dead["error"] == "no reply at 1280 bytes"
    json.dumps(result)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


ECHO = textwrap.dedent(
    """
    import asyncio, sys
    from talbench.agents.net.echo import start_echo
    async def main():
        echo = await start_echo(sys.argv[1], 8946)
        print("ready", flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
    """
)

PROBE_RUN = textwrap.dedent(
    """
    import asyncio, json, sys
    from talbench.agents.probes.mtu.probe import PROBE
    job = PROBE.jobs[0]
    params = job.parse({"peers": [{"name": "far", "host": sys.argv[1], "port": 8946}], "timeout": 0.1})
    print(json.dumps(asyncio.run(job.run(params, None))))
    """
)


@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2: builds namespaces"
)
def test_a_narrower_link_behind_a_router_is_found_to_the_byte():
    """a --1500-- router --1400-- b: packets from a above 1400 bytes leave a's own 1500-byte link
    and are dropped by the router (DF set), so the search must find 1400 on the far link."""
    tag = secrets.token_hex(3)
    a, r, b = (f"tb-mtu{tag}-{n}" for n in ("a", "r", "b"))
    echo = None
    try:
        for ns in (a, r, b):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "left", "netns", r)
        ip("-n", r, "link", "add", "right", "type", "veth", "peer", "name", "eth0", "netns", b)
        ip("-n", r, "link", "set", "right", "mtu", "1400")
        ip("-n", b, "link", "set", "eth0", "mtu", "1400")
        for ns, dev, address in (
            (a, "eth0", "10.252.0.1/24"),
            (r, "left", "10.252.0.2/24"),
            (r, "right", "10.252.1.2/24"),
            (b, "eth0", "10.252.1.1/24"),
        ):
            ip("-n", ns, "addr", "add", address, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", a, "route", "add", "10.252.1.0/24", "via", "10.252.0.2")
        ip("-n", b, "route", "add", "10.252.0.0/24", "via", "10.252.1.2")
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=10)
        echo = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", ECHO, "10.252.1.1"], stdout=subprocess.PIPE, text=True
        )
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        done = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, "-c", PROBE_RUN, "10.252.1.1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        far = json.loads(done.stdout)["peers"]["far"]
        assert far["local_mtu"] == 1500 and far["ceiling"] == 1500  # a's own link is not the limit
        assert far["mtu"] == 1400, far
        assert [1500, False] in far["tried"] and [1400, True] in far["tried"]
    finally:
        if echo is not None:
            echo.kill()
            echo.wait(timeout=10)
        for ns in (a, r, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
