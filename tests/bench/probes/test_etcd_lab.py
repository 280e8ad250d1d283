"""The scratch etcd cluster on a real lab (network namespaces, one agent per node, members on the
lab network, data on each node's data directory): the etcd checks judged from real results,
nothing left behind (also after cancellation), and one control plane behind a 10 ms delay
raising the member RTT, the write latency and the recommended heartbeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import psutil
import pytest

from talbench.agents.probes.etcd.binary import ETCD_VERSION
from talbench.bench.dispatch.lab import lab_fleet
from talbench.bench.execute import execute
from talbench.bench.judge import judge
from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec, NodeDelay
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey, Status, Verdict
from talbench.bench.plan import make_plan
from talbench.bench.probes.etcd.driver import EtcdDriver
from talbench.bench.report.runjson.write import measurement_dict
from talbench.bench.run import metrics_of
from talbench.bench.scenario import parse
from tests.bench.probes.etcd_snippet import SNIPPET

pytestmark = [pytest.mark.root("ip", "etcd"), pytest.mark.lab]

DRIVERS = {"etcd": EtcdDriver()}
METRICS = metrics_of(DRIVERS)


def leftovers(state: LabState) -> list[str]:
    found = [str(p) for node in state.nodes for p in node.data_dir.glob("etcd-*")]
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if (
                proc.info["name"] == "etcd"
                and str(state.nodes[0].data_dir.parents[1]) in cmdline
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(f"etcd {proc.pid}")
        except psutil.NoSuchProcess:
            continue
    return found


async def run_etcd(state: LabState, run_id: str, duration: str = "6s") -> tuple[dict[str, Verdict], dict]:
    scenario = parse(SNIPPET, "snippet.yaml", METRICS)
    settings = {"etcd": DRIVERS["etcd"].settings({**scenario.probes["etcd"], "duration": duration}, quick=True)}
    async with lab_fleet(state, run_id) as fleet:
        plan = make_plan(scenario.checks, fleet.nodes, METRICS)
        execution = await execute(plan, fleet, DRIVERS, settings, NullProgress())
    verdicts = {f"{v.check}/{v.subject}": v for v in judge(plan, execution.results, fleet.nodes, METRICS)}
    return verdicts, dict(execution.results)


async def test_three_member_scratch_cluster_on_the_lab(make_lab: Callable[..., LabState]) -> None:
    state = make_lab(LabSpec(control_planes=3, workers=1))
    verdicts, results = await run_etcd(state, "run-etcd-lab")
    assert leftovers(state) == []
    if any(v.status is Status.INVALID for v in verdicts.values()):
        # the generator fell behind its schedule (a loaded 2-core CI host): talbench rightly
        # refuses to judge that; measure once more rather than assert on an untrusted figure
        verdicts, results = await run_etcd(state, "run-etcd-lab-2")
        assert leftovers(state) == []
    cluster = results[ResultKey("etcd", "cluster")]
    assert cluster.ok, cluster.error
    members = cluster.data["result"]["members"]
    addresses = {n.name: n.address for n in state.cluster_nodes()}
    assert sorted(m["name"] for m in members) == ["cp1", "cp2", "cp3"]  # the worker runs no member
    for member in members:  # members talk over the lab network, on the node addresses
        assert member["peer_urls"] == [f"http://{addresses[member['name']]}:12380"]
    assert all(t["ok"] and t["data_removed"] for t in cluster.data["teardown"].values())
    # the members run the etcd Talos ships (make etcd builds it), and run.json records it
    recorded = json.loads(json.dumps(measurement_dict(cluster)))["data"]["members"]
    assert sorted(recorded) == ["cp1", "cp2", "cp3"]
    assert {member["version"] for member in recorded.values()} == {ETCD_VERSION} == {"3.6.16"}, recorded
    judged = {k: v for k, v in verdicts.items() if v.status is not Status.INFO}
    assert judged and all(
        v.status in (Status.PASS, Status.WARN, Status.FAIL)
        or (v.status is Status.INVALID and "load generator saturated" in v.message)  # twice in a row
        for v in judged.values()
    ), judged
    assert {k for k in verdicts if k.startswith("etcd-wal-fsync/")} == {
        "etcd-wal-fsync/cp1",
        "etcd-wal-fsync/cp2",
        "etcd-wal-fsync/cp3",
    }
    assert verdicts["etcd-write-errors/cluster"].observed == 0


async def test_cancelling_the_run_leaves_no_member(make_lab: Callable[..., LabState]) -> None:
    state = make_lab(LabSpec(control_planes=3, workers=0))
    task = asyncio.ensure_future(run_etcd(state, "run-etcd-cancel", duration="60s"))
    for _ in range(200):  # until the members run
        await asyncio.sleep(0.1)
        if len([p for node in state.nodes for p in node.data_dir.glob("etcd-*")]) == 3:
            break
    await asyncio.sleep(2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(state) == []


async def test_a_delayed_control_plane_raises_rtt_and_latency_within_etcds_defaults(
    make_lab: Callable[..., LabState],
) -> None:
    plain = make_lab(LabSpec(control_planes=3, workers=0))
    fast, _ = await run_etcd(plain, "run-etcd-fast")
    if fast["etcd-latency-p99/cluster"].status is Status.INVALID:  # the generator fell behind: see below
        fast, _ = await run_etcd(plain, "run-etcd-fast-2")
    delayed_lab = make_lab(LabSpec(control_planes=3, workers=0, delays=(NodeDelay("cp3", 10.0),)))
    slow, results = await run_etcd(delayed_lab, "run-etcd-slow")
    if slow["etcd-latency-p99/cluster"].status is Status.INVALID:
        # the generator fell behind its schedule (a loaded 2-core CI host): talbench rightly
        # refuses to judge that; measure once more rather than assert on an untrusted figure
        slow, results = await run_etcd(delayed_lab, "run-etcd-slow-2")
    assert leftovers(plain) == [] and leftovers(delayed_lab) == []
    fast_rtt, slow_rtt = fast["etcd-member-rtt/cluster"], slow["etcd-member-rtt/cluster"]
    # the plain lab's HTTP round trips are ~1.5 ms idle and were seen at 5.7 ms on a loaded CI host;
    # the delay line adds 20 ms to every round trip with cp3
    assert fast_rtt.observed < 0.010, fast_rtt
    assert slow_rtt.observed >= 0.020 and "cp3" in slow_rtt.detail.split(";")[0], slow_rtt  # 10 ms each way
    assert slow_rtt.observed >= fast_rtt.observed + 0.012, (fast_rtt, slow_rtt)
    fast_hb, slow_hb = fast["etcd-recommended-heartbeat/cluster"], slow["etcd-recommended-heartbeat/cluster"]
    # 20 ms is far inside etcd's defaults: the advice is to keep them, said in words
    assert fast_hb.observed == slow_hb.observed == 0.1, (fast_hb, slow_hb)
    assert "suffice for this RTT: keep them" in slow_hb.detail, slow_hb
    assert slow["etcd-recommended-election-timeout/cluster"].observed == pytest.approx(1.0)
    # a third of the writes go to cp3's client URL: 20 ms there and back, 20 more to the leader
    for verdict in (fast["etcd-latency-p99/cluster"], slow["etcd-latency-p99/cluster"]):
        assert verdict.observed is not None, verdict  # (invalid when the generator fell behind)
    assert slow["etcd-latency-p99/cluster"].observed >= 0.03, slow["etcd-latency-p99/cluster"]
    assert slow["etcd-latency-p99/cluster"].observed > fast["etcd-latency-p99/cluster"].observed
    assert results[ResultKey("etcd", "cluster")].ok
