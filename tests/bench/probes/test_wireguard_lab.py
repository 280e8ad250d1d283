"""The kubespan scenario on a real lab (network namespaces, real agents, wireguard-go, iperf3):
per pair node-path and tunnel figures with the overhead, judged; nothing left behind, also after
cancellation.  The judge rules that depend on a measurement are checked on real runs here."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from talbench.agents.probes.wireguard import links as agent_wireguard
from talbench.bench.dispatch.lab import lab_fleet
from talbench.bench.execute import execute
from talbench.bench.judge import judge
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec, NodeDelay
from talbench.bench.metric import NullProgress
from talbench.bench.model import Status, Verdict
from talbench.bench.plan import make_plan
from talbench.bench.probes.wireguard.driver import WireguardDriver
from talbench.bench.run import metrics_of
from talbench.bench.scenario import load, parse

pytestmark = [pytest.mark.root("ip", "wg", "wireguard-go", "iperf3"), pytest.mark.lab]

SCENARIO = Path(__file__).parents[3] / "scenarios" / "kubespan.yaml"
DRIVERS = {"wireguard": WireguardDriver()}  # this probe alone: the scenario uses nothing else
METRICS = metrics_of(DRIVERS)


async def run_scenario(state: LabState, scenario, run_id: str) -> tuple[list[Verdict], dict]:
    settings = {p: DRIVERS[p].settings(raw, quick=True) for p, raw in scenario.probes.items()}
    async with lab_fleet(state, run_id) as fleet:
        plan = make_plan(scenario.checks, fleet.nodes, METRICS)
        execution = await execute(plan, fleet, DRIVERS, settings, NullProgress())
    return list(judge(plan, execution.results, fleet.nodes, METRICS)), dict(execution.results)


def leftovers(state: LabState) -> list[str]:
    """WireGuard links, wireguard-go / iperf3 processes and control sockets of this lab's runs."""
    found = []
    for node in state.nodes:
        links = subprocess.run(
            ["ip", "-n", node.namespace, "-o", "link", "show"], capture_output=True, text=True, timeout=10
        ).stdout
        found += [f"{node.name}: {line.split(':')[1].strip()}" for line in links.splitlines() if ": tb" in line]
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] in ("wireguard-go", "iperf3") and proc.status() != psutil.STATUS_ZOMBIE:
                cmdline = " ".join(proc.info["cmdline"] or ())
                if "198.18." in cmdline or "10.213." in cmdline or " tb" in cmdline:
                    found.append(f"process {proc.pid}: {cmdline}")
        except psutil.NoSuchProcess:
            continue
    found += (
        [str(p) for p in agent_wireguard.SOCKET_DIR.glob("tb*.sock")] if agent_wireguard.SOCKET_DIR.exists() else []
    )
    for node in state.nodes:
        found += [str(p) for p in node.data_dir.rglob("*") if p.is_file() and "key" in p.name]
    return found


def by_check(verdicts: list[Verdict], name: str) -> dict[str, Verdict]:
    return {str(v.subject): v for v in verdicts if v.check == name}


async def test_kubespan_scenario_on_the_lab(lab: LabState) -> None:
    scenario = load(SCENARIO, METRICS, lambda p, raw: DRIVERS[p].settings(raw, quick=True))
    verdicts, results = await run_scenario(lab, scenario, "wg-lab-run")
    pairs = ["cp1-cp2", "cp1-cp3", "cp1-w1", "cp2-cp3", "cp2-w1", "cp3-w1"]

    # Per pair: node-path and tunnel throughput, the ratio, RTT added, all measured.
    for check in (
        "node-throughput",
        "tunnel-throughput",
        "tunnel-throughput-share",
        "tunnel-rtt-added",
        "tunnel-cpu-per-gbit",
    ):
        judged = by_check(verdicts, check)
        assert sorted(judged) == pairs, check
        for subject, verdict in judged.items():
            assert verdict.observed is not None, f"{check} {subject}: {verdict.status} {verdict.message}"
    node_tp, tunnel_tp = by_check(verdicts, "node-throughput"), by_check(verdicts, "tunnel-throughput")
    for pair in pairs:
        # wireguard-go on this machine costs throughput: the tunnel is slower than the veth path.
        assert 0 < tunnel_tp[pair].observed < node_tp[pair].observed
        assert "via plain" in node_tp[pair].detail
    share = by_check(verdicts, "tunnel-throughput-share")
    for pair, verdict in share.items():
        assert "tunnel" in verdict.detail and "plain" in verdict.detail  # both figures shown
        ratio = tunnel_tp[pair].observed / node_tp[pair].observed
        assert verdict.observed == pytest.approx(ratio)
        # the rule: below half of the plain path -> warn, else pass
        assert verdict.status is (Status.WARN if ratio < 0.5 else Status.PASS)

    # Control-plane RTT through the tunnel on an undelayed lab: below 15 ms (this busy 2-core
    # machine sees p99 of a few ms through wireguard-go, so a warn at 10 ms is possible).
    tunnel_rtt = by_check(verdicts, "control-plane-tunnel-rtt")
    assert sorted(tunnel_rtt) == ["cp1-cp2", "cp1-cp3", "cp2-cp3"]
    for verdict in tunnel_rtt.values():
        assert verdict.status in (Status.PASS, Status.WARN) and verdict.observed < 0.015, verdict.message
    added = by_check(verdicts, "tunnel-rtt-added")
    assert all(-0.001 < v.observed < 0.005 for v in added.values())

    # No KubeSpan in the lab: both KubeSpan rules pass with 0.
    assert [v.status for v in by_check(verdicts, "kubespan-cluster-size").values()] == [Status.PASS]
    assert all(v.observed == 0 for v in by_check(verdicts, "kubespan-on-storage-nodes").values())

    # Which path and implementation each figure took is in the raw result.
    data = next(m.data for k, m in results.items() if k.peer is not None)
    assert data["node_path"]["via"] == "plain" and data["tunnel"]["via"] == "wireguard-test-tunnel"
    assert set(data["tunnel"]["implementation"].values()) == {"wireguard-go"}
    assert data["tunnel"]["wg_tx_bytes"] >= data["tunnel"]["iperf"]["client"]["bytes_sent"]
    assert leftovers(lab) == []


DELAYED = """\
schema: 1
name: delayed-tunnel
probes:
  wireguard: {duration: 1s, rtt_count: 100, min_rtt_samples: 50, max_other_pairs: 0}
checks:
  - name: control-plane-tunnel-rtt
    metric: wireguard.tunnel_rtt_p99
    scope: control-plane-pairs
    fail: 15ms
    source: Talos reference architecture, "less than 15ms RTT" between control planes
"""


async def test_tunnel_rtt_rule_fails_the_pairs_behind_a_delay(make_lab: Callable[..., LabState]) -> None:
    state = make_lab(LabSpec(control_planes=3, workers=0, delays=(NodeDelay("cp3", 10.0),)))
    scenario = parse(DELAYED, "delayed.yaml", METRICS, lambda p, raw: DRIVERS[p].settings(raw, quick=True))
    verdicts, _ = await run_scenario(state, scenario, "wg-delay-run")
    judged = by_check(verdicts, "control-plane-tunnel-rtt")
    assert judged["cp1-cp2"].status is Status.PASS
    for pair in ("cp1-cp3", "cp2-cp3"):
        assert judged[pair].status is Status.FAIL and judged[pair].observed >= 0.015, judged[pair].message
    assert leftovers(state) == []


async def test_cancelled_run_leaves_nothing(lab: LabState) -> None:
    scenario = load(SCENARIO, METRICS, lambda p, raw: DRIVERS[p].settings(raw, quick=True))
    task = asyncio.ensure_future(run_scenario(lab, scenario, "wg-lab-cancel"))
    give_up = time.monotonic() + 60
    # Cancel in the middle of a transfer through the tunnel (wireguard-go and iperf3 running).
    while not any(
        p.info["name"] == "iperf3" and "198.18." in " ".join(p.info["cmdline"] or ())
        for p in psutil.process_iter(["name", "cmdline"])
    ):
        assert time.monotonic() < give_up and not task.done(), "no tunnel transfer started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    give_up = time.monotonic() + 15
    while leftovers(lab):
        assert time.monotonic() < give_up, leftovers(lab)
        await asyncio.sleep(0.2)
