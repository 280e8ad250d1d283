"""The wireguard probe's tunnel job: WireGuard test tunnels between two agents in two network
namespaces, real wireguard-go, wg, iperf3 and the RTT probe's job through the tunnel; nothing left
behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from talbench.agents.probe import ProbeParamError
from talbench.agents.probes.rtt.probe import PROBE as RTT
from talbench.agents.probes.wireguard import links as wireguard
from talbench.agents.probes.wireguard.probe import IPERF_JOB, PROBE, TUNNEL_JOB
from talbench.agents.probes.wireguard.tunnel import KubeSpanDetect, TunnelUp, link_name
from tests.agents.netns_agents import NetnsAgents, netns_agents, processes_named, require_root_tools

RUN = "wg-test"
TUNNEL_ADDRESSES = {"a": "198.18.0.1", "b": "198.18.0.2"}
WG_PORT = 51831
ECHO_PORT = 51832


def test_link_names_are_short_and_unique_per_run_and_node() -> None:
    names = {link_name(run, node, "p0") for run in ("r1", "r2") for node in ("cp1", "cp2")}
    assert len(names) == 4
    assert all(len(name) <= 15 and name.startswith("tb") for name in names)


UP = {"action": "up", "tunnel": "p0", "address": "198.18.0.1/30", "listen_port": 51831, "echo_port": 51832}
PEER = {
    "action": "peer",
    "tunnel": "p0",
    "public_key": "x" * 42 + "A=",
    "endpoint_host": "10.0.0.1",
    "endpoint_port": 51831,
    "allowed_ip": "198.18.0.2",
}


def test_the_job_is_declared_by_the_wireguard_probe() -> None:
    assert TUNNEL_JOB.name == "wireguard.tunnel" and TUNNEL_JOB in PROBE.jobs
    assert {t.binary for t in PROBE.tools} >= {"wg", "wireguard-go", "ip"} and PROBE.capabilities == ("NET_ADMIN",)


def test_params_take_the_settings_defaults() -> None:
    up = TUNNEL_JOB.parse(UP).root
    assert isinstance(up, TunnelUp) and up.listen_port == 51831 and up.implementation == "auto" and up.mtu == 1420
    assert TUNNEL_JOB.time_limit(TUNNEL_JOB.parse(UP)) == 30
    assert isinstance(TUNNEL_JOB.parse({"action": "detect"}).root, KubeSpanDetect)
    assert TUNNEL_JOB.parse(PEER).root.action == "peer"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({**UP, "listen_port": 51820}, "listen_port: 51820 is KubeSpan's port"),
        ({**UP, "echo_port": 51820}, "echo_port: 51820 is KubeSpan's port"),
        ({**UP, "listen_port": 80}, "listen_port"),
        ({**UP, "tunnel": "../x"}, "tunnel"),
        ({**UP, "address": "10.0.0.1/8"}, "address: .*small test subnet"),
        ({**UP, "address": "198.18.0.0/30"}, "address"),
        ({**UP, "implementation": "boringtun"}, "implementation"),
        ({**UP, "mtu": 100}, "mtu"),
        ({**UP, "bypass_mark": 0}, "bypass_mark"),
        ({k: v for k, v in UP.items() if k != "echo_port"}, "echo_port"),
        ({**PEER, "public_key": "nope"}, "public_key"),
        ({**PEER, "endpoint_host": "node-b"}, "endpoint_host"),
        ({**PEER, "endpoint_port": 51820}, "endpoint_port"),
        ({**PEER, "mtu": 1420}, "mtu"),
        ({"action": "stats"}, "tunnel"),
        ({"action": "down", "tunnel": "p0", "address": "198.18.0.1/30"}, "address"),
        ({"action": "reboot"}, "action"),
        ({"tunnel": "p0"}, "action"),
    ],
)
def test_params_refuse_kubespan_port_and_bad_keys(params: dict[str, Any], needle: str) -> None:
    with pytest.raises(ProbeParamError, match=needle):
        TUNNEL_JOB.parse(params)


async def _up(env: NetnsAgents, tunnel: str = "p0", run: str = RUN) -> dict[str, dict[str, Any]]:
    """Both sides up, then each configured with the other: the coordinator's two steps."""
    ups = await asyncio.gather(
        *(
            env.clients[n].run_job(
                TUNNEL_JOB.name,
                {
                    "action": "up",
                    "tunnel": tunnel,
                    "address": f"{TUNNEL_ADDRESSES[n]}/30",
                    "listen_port": WG_PORT,
                    "echo_port": ECHO_PORT,
                },
                run,
                deadline=30,
            )
            for n in ("a", "b")
        )
    )
    for outcome in ups:
        assert outcome.ok, outcome.error
    up = {"a": dict(ups[0].result), "b": dict(ups[1].result)}
    peers = await asyncio.gather(
        *(
            env.clients[n].run_job(
                TUNNEL_JOB.name,
                {
                    "action": "peer",
                    "tunnel": tunnel,
                    "public_key": up[o]["public_key"],
                    "endpoint_host": env.address(o),
                    "endpoint_port": WG_PORT,
                    "allowed_ip": TUNNEL_ADDRESSES[o],
                },
                run,
                deadline=30,
            )
            for n, o in (("a", "b"), ("b", "a"))
        )
    )
    for outcome in peers:
        assert outcome.ok, outcome.error
    return up


def _assert_gone(env: NetnsAgents, up: dict[str, dict[str, Any]]) -> None:
    for node, result in up.items():
        name = result["interface"]
        assert name not in env.links(node)
        assert not (wireguard.SOCKET_DIR / f"{name}.sock").exists()
        assert not processes_named("wireguard-go", name)


def _assert_no_key_on_disk(env: NetnsAgents) -> None:
    for node in ("a", "b"):
        files = [p for p in env.data_dir(node).rglob("*") if p.is_file()]
        assert files == [], f"files left in {node}'s data dir: {files}"


@pytest.mark.root
async def test_tunnel_carries_rtt_and_throughput_and_is_torn_down(tmp_path: Path) -> None:
    require_root_tools("wg", "wireguard-go", "iperf3")
    async with netns_agents(tmp_path) as env:
        up = await _up(env)
        for node in ("a", "b"):
            result = up[node]
            assert result["implementation"] == "wireguard-go"  # this kernel has no WireGuard module
            assert len(result["interface"]) <= 15 and result["listen_port"] != 51820
            assert result["fwmark"] is None and result["kubespan"]["active"] is False
            assert result["interface"] in env.links(node)
        assert up["a"]["interface"] != up["b"]["interface"]  # shared /var/run/wireguard

        # RTT through the tunnel: the RTT probe against b's echo responder on its tunnel address.
        rtt = await env.clients["a"].run_job(
            RTT.jobs[0].name,
            {
                "peers": [{"name": "b", "host": TUNNEL_ADDRESSES["b"], "port": ECHO_PORT}],
                "count": 30,
                "interval": 0.01,
                "warmup": 3,
                "stagger": 0,
            },
            RUN,
            deadline=30,
        )
        assert rtt.ok, rtt.error
        assert rtt.result["peers"]["b"]["received"] == 30

        # Throughput through the tunnel; WireGuard's counters prove the bytes took it.
        server = asyncio.create_task(
            env.clients["b"].run_job(
                IPERF_JOB.name,
                {"role": "server", "bind": TUNNEL_ADDRESSES["b"], "port": 5311, "duration": 1, "accept_within": 10},
                RUN,
                deadline=30,
            )
        )
        client = await env.clients["a"].run_job(
            IPERF_JOB.name,
            {"role": "client", "host": TUNNEL_ADDRESSES["b"], "port": 5311, "duration": 1, "connect_within": 10},
            RUN,
            deadline=30,
        )
        assert client.ok, client.error
        assert (await server).ok
        assert client.result["route"]["dev"] == up["a"]["interface"]
        stats = await env.clients["a"].run_job(TUNNEL_JOB.name, {"action": "stats", "tunnel": "p0"}, RUN, deadline=30)
        peer = stats.result["peers"][up["b"]["public_key"]]
        assert peer["latest_handshake"] > 0
        assert peer["tx_bytes"] >= client.result["bytes_sent"]

        # Teardown: link, wireguard-go process and control socket gone; no key on disk.
        downs = await asyncio.gather(
            *(
                env.clients[n].run_job(TUNNEL_JOB.name, {"action": "down", "tunnel": "p0"}, RUN, deadline=30)
                for n in ("a", "b")
            )
        )
        assert all(d.ok and d.result["released"] and not d.result["exists"] for d in downs)
        _assert_gone(env, up)
        _assert_no_key_on_disk(env)


@pytest.mark.root
async def test_releasing_the_run_removes_the_tunnel(tmp_path: Path) -> None:
    require_root_tools("wg", "wireguard-go")
    async with netns_agents(tmp_path) as env:
        up = await _up(env, run="wg-release")
        released = await env.clients["a"].release_run("wg-release")
        assert released == ["wg-tunnel:p0"]
        await env.clients["b"].release_run("wg-release")
        _assert_gone(env, up)


@pytest.mark.root
async def test_agent_shutdown_removes_the_tunnel(tmp_path: Path) -> None:
    require_root_tools("wg", "wireguard-go")
    async with netns_agents(tmp_path) as env:
        up = await _up(env, run="wg-shutdown")
        for proc in env.processes.values():
            proc.terminate()
            proc.wait(timeout=20)
        give_up = time.monotonic() + 5
        while any(processes_named("wireguard-go", r["interface"]) for r in up.values()):
            assert time.monotonic() < give_up
            await asyncio.sleep(0.05)
        _assert_gone(env, up)


@pytest.mark.root
async def test_killed_agent_takes_wireguard_go_with_it(tmp_path: Path) -> None:
    require_root_tools("wg", "wireguard-go")
    async with netns_agents(tmp_path) as env:
        up = await _up(env, run="wg-kill9")
        env.processes["a"].kill()
        env.processes["a"].wait(timeout=10)
        give_up = time.monotonic() + 5
        while processes_named("wireguard-go", up["a"]["interface"]):
            assert time.monotonic() < give_up, "wireguard-go outlived its agent"
            await asyncio.sleep(0.05)
        # told by the kernel (parent-death SIGTERM), wireguard-go removed its control socket
        give_up = time.monotonic() + 5
        while (wireguard.SOCKET_DIR / f"{up['a']['interface']}.sock").exists():
            assert time.monotonic() < give_up, "wireguard-go's socket outlived its agent"
            await asyncio.sleep(0.05)


def test_stale_control_sockets_are_swept(tmp_path: Path) -> None:
    import socket

    stale, live, other = tmp_path / "tb0123456789.sock", tmp_path / "tbabcdefabcd.sock", tmp_path / "wg0.sock"
    for path in (stale, other):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(path))  # closed again: nobody listens
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(live))
        listener.listen(1)
        assert wireguard.sweep_stale_sockets(tmp_path) == ["tb0123456789.sock"]
        assert not stale.exists() and live.exists() and other.exists()
    finally:
        listener.close()


_BYPASS_SCRIPT = textwrap.dedent("""
    import asyncio, json, subprocess, sys
    from pathlib import Path
    from talbench.agents.cleanup import Cleanups
    from talbench.agents.probe import ProbeContext
    from talbench.agents.probes.wireguard.probe import tunnel_job

    async def main():
        job = tunnel_job(sys_root=Path(sys.argv[1]))
        cleanups = Cleanups()
        ctx = ProbeContext("a", "wg-bypass", Path(sys.argv[2]), "10.250.0.1", 8946, cleanups)
        params = job.parse({"action": "up", "tunnel": "p0", "address": "198.18.0.1/30", "listen_port": 51831, "echo_port": 51832})
        result = await job.run(params, ctx)
        shown = subprocess.run(["wg", "show", result["interface"], "fwmark"], capture_output=True, text=True).stdout.strip()
        await cleanups.release_all()
        gone = subprocess.run(["ip", "link", "show", result["interface"]], capture_output=True).returncode != 0
        print(json.dumps({"result": result, "wg_fwmark": shown, "gone": gone}))

    asyncio.run(main())
""")


@pytest.mark.root
def test_tunnel_bypasses_an_active_kubespan(tmp_path: Path) -> None:
    """With KubeSpan up (a sysfs tree saying so), the test tunnel's UDP carries mark 0x20."""
    require_root_tools("wg", "wireguard-go")
    sysfs = tmp_path / "sys"
    link = sysfs / "class" / "net" / "kubespan"
    link.mkdir(parents=True)
    (link / "flags").write_text("0x1091\n")
    (link / "operstate").write_text("unknown\n")
    (link / "mtu").write_text("1420\n")
    data = tmp_path / "data"
    data.mkdir()
    with _namespace() as ns:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _BYPASS_SCRIPT, str(sysfs), str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"]["kubespan"]["active"] is True
    assert report["result"]["fwmark"] == 0x20
    assert report["wg_fwmark"] == "0x20"
    assert report["gone"]


class _namespace:
    """A bare namespace (tb-<random>) for one test, removed on exit."""

    def __enter__(self) -> str:
        import secrets

        self.name = f"tb-{secrets.token_hex(3)}-k"
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=10)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, timeout=10)
        return self.name

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
