"""The etcd load generator and the ``etcd.load`` job against a real 3-member etcd cluster on
127.0.0.1; the latency histogram and the Prometheus parser on real and known inputs."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import etcd3gw
import pytest

from talbench.agents.cleanup import Cleanups
from talbench.agents.probe import ProbeContext, ProbeParamError
from talbench.agents.probes.etcd import admin, promtext
from talbench.agents.probes.etcd.generator import LoadError, LoadSpec, TlsFiles, run_load, saturation
from talbench.agents.probes.etcd.histogram import LatencyHistogram, bucket_bounds, bucket_index
from talbench.agents.probes.etcd.load import run_prefix
from talbench.agents.probes.etcd.local_cluster import LocalCluster, free_ports, local_cluster
from talbench.agents.probes.etcd.member import cleanup_name
from talbench.agents.probes.etcd.probe import LOAD

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (make etcd)")


# ---- histogram ---------------------------------------------------------------------------------


def test_buckets_tile_the_line_and_stay_narrow() -> None:
    previous_high = 0
    for index in range(600):
        low, high = bucket_bounds(index)
        assert low == previous_high, index
        assert bucket_index(low) == index and bucket_index(high - 1) == index
        assert (high - low) <= max(1, low / 32)
        previous_high = high


def test_percentiles_are_within_bucket_resolution_and_extremes_exact() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.004), 0.8) for _ in range(20_000)]
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(q / 100 * len(ordered)) - 1]
        assert histogram.percentile(q) == pytest.approx(exact, rel=0.035)
    assert histogram.max() == pytest.approx(max(values), abs=1e-9)
    assert histogram.count_above(0.01) == pytest.approx(sum(v > 0.01 for v in values), rel=0.05)
    assert histogram.min() == pytest.approx(min(values), abs=1e-9)
    mean = sum(values) / len(values)
    assert histogram.stddev() == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)), rel=1e-6)


def test_merging_equals_recording_everything_and_survives_the_wire() -> None:
    rng = random.Random(3)
    parts = [[rng.expovariate(200) for _ in range(1000)] for _ in range(3)]
    whole = LatencyHistogram()
    pieces = []
    for part in parts:
        piece = LatencyHistogram()
        for value in part:
            piece.record(value)
            whole.record(value)
        pieces.append(LatencyHistogram.from_wire(piece.to_wire()))
    merged = LatencyHistogram.merged(pieces)
    assert merged.buckets == whole.buckets and merged.count == 3000
    assert merged.percentile(99) == whole.percentile(99) and merged.max() == whole.max()
    assert merged.stddev() == pytest.approx(whole.stddev(), rel=1e-9)


def test_a_corrupt_histogram_is_refused() -> None:
    histogram = LatencyHistogram()
    histogram.record(0.001)
    wire = histogram.to_wire()
    with pytest.raises(ValueError):
        LatencyHistogram.from_wire({**wire, "count": 5})
    with pytest.raises(ValueError):
        LatencyHistogram.from_wire({**wire, "schema": 99})


# ---- Prometheus text ---------------------------------------------------------------------------

PAGE_BEFORE = """# HELP etcd_disk_wal_fsync_duration_seconds x
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 10
etcd_disk_wal_fsync_duration_seconds_sum 0.005
etcd_disk_wal_fsync_duration_seconds_count 10
etcd_server_leader_changes_seen_total 1
"""
PAGE_AFTER = """etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 60
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 108
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 110
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 110
etcd_disk_wal_fsync_duration_seconds_sum 0.125
etcd_disk_wal_fsync_duration_seconds_count 110
etcd_network_peer_round_trip_time_seconds_bucket{To="abc",le="0.0001"} 0
etcd_network_peer_round_trip_time_seconds_bucket{To="abc",le="+Inf"} 2
etcd_network_peer_round_trip_time_seconds_sum{To="abc"} 0.0006
etcd_network_peer_round_trip_time_seconds_count{To="abc"} 2
etcd_server_leader_changes_seen_total 3
"""


def test_quantiles_come_from_the_delta_of_cumulative_buckets() -> None:
    before, after = promtext.parse(PAGE_BEFORE), promtext.parse(PAGE_AFTER)
    delta = promtext.merge_histograms(
        promtext.histogram_delta(before["histograms"][promtext.WAL_FSYNC], after["histograms"][promtext.WAL_FSYNC])
    )
    assert delta["count"] == 100 and delta["sum"] == pytest.approx(0.12)
    # 50 of 100 fsyncs <= 1 ms, 98 <= 2 ms, all <= 4 ms: p50 at most 1 ms, p99 at most 4 ms
    assert promtext.quantile_upper_bound(delta, 0.5) == 0.001
    assert promtext.quantile_upper_bound(delta, 0.98) == 0.002
    assert promtext.quantile_upper_bound(delta, 0.99) == 0.004
    # read as histogram_quantile() does: linear inside the bucket
    assert promtext.quantile_interpolated(delta, 0.5) == pytest.approx(0.001)
    assert promtext.quantile_interpolated(delta, 0.99) == pytest.approx(0.003)
    assert promtext.quantile_interpolated(delta, 0.25) == pytest.approx(0.0005)
    rtt = after["histograms"][promtext.PEER_RTT][0]
    assert rtt["labels"] == {"To": "abc"} and promtext.mean(rtt) == pytest.approx(0.0003)
    assert promtext.counter_total(after, "etcd_server_leader_changes_seen_total") == 3


def test_saturation_rules() -> None:
    quiet = LatencyHistogram()
    quiet.record(0.001)
    assert saturation([0.2, 0.3], 0.25, quiet, "open", 1) is None
    assert "busy 95 %" in saturation([0.95], 0.5, quiet, "open", 1)
    assert "all cores" in saturation([0.5, 0.5], 0.92, quiet, "open", 1)
    late = LatencyHistogram()
    for value in [0.001] * 980 + [0.06] * 20:
        late.record(value)
    assert "20 of 1000 writes went out more than 50 ms late" in saturation([0.2], 0.1, late, "open", 1000)
    assert saturation([0.2], 0.1, late, "open", 3000) is None  # under 1 % of all sends
    assert saturation([0.2], 0.1, late, "closed", 1000) is None
    stall = LatencyHistogram()
    for value in [0.001] * 999 + [0.3]:
        stall.record(value)
    assert "stalled 300 ms" in saturation([0.2], 0.1, stall, "open", 1000)


def test_load_parameters_are_the_scenarios() -> None:
    params = LOAD.parse({"endpoints": ["http://127.0.0.1:4000", "http://[::1]:4002"]})
    assert (params.rate, params.clients, params.duration, params.mode, params.start_timeout) == (
        150,
        50,
        60.0,
        "open",
        30.0,
    )
    assert LOAD.time_limit(params) > params.duration + params.start_timeout


ENDPOINT = ["http://127.0.0.1:4000"]


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"endpoints": []}, "endpoints"),
        ({"endpoints": ["https://x:1"]}, "endpoints.0"),
        ({"endpoints": ["http://127.0.0.1:70000"]}, "endpoints.0"),
        ({"endpoints": ENDPOINT * 10}, "endpoints"),
        ({"endpoints": ENDPOINT, "mode": "closed"}, "mode: must be 'open' or 'ceiling'"),
        ({"endpoints": ENDPOINT, "clients": 0}, "clients must be at least 1"),
        ({"endpoints": ENDPOINT, "duration": "2s"}, "duration"),
        ({"endpoints": ENDPOINT, "nope": 1}, "unknown parameter 'nope'"),
        ({"endpoints": ENDPOINT, "rate": 100000, "duration": 600}, "rate x duration"),
        ({"endpoints": ENDPOINT, "min_requests": 5}, "unknown parameter 'min_requests'"),
    ],
)
def test_load_parameters_are_bounded(raw: dict, words: str) -> None:
    with pytest.raises(ProbeParamError, match=words):
        LOAD.parse(raw)


# ---- against a real cluster --------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    if shutil.which("etcd") is None:
        pytest.skip("needs etcd (make etcd)")
    async with local_cluster(3, tmp_path, "run-load") as running:
        yield running


def keyspace(url: str) -> dict[bytes, str]:
    gateway = admin.client(url)
    try:
        return {meta["key"]: meta["mod_revision"] for _, meta in gateway.get_all()}
    finally:
        gateway.session.close()


@pytest.mark.processes
@needs_etcd
@pytest.mark.parametrize("transport", ["grpc", "gateway"])
async def test_open_loop_holds_the_rate_and_writes_only_under_the_prefix(cluster: LocalCluster, transport: str) -> None:
    url = cluster.client_urls[0]
    gateway = etcd3gw.Etcd3Client(port=int(url.rsplit(":", 1)[1]), host="127.0.0.1", api_path="/v3/")
    gateway.put("/outside/a", "1")
    gateway.put("/talbench/run-load0", "just past the prefix")
    outside = keyspace(url)
    spec = LoadSpec(
        cluster.client_urls, "/talbench/run-load/", "open", clients=20, duration=3.0, rate=150, transport=transport
    )
    result = await run_load(spec)
    requests = result["requests"]
    assert requests["planned"] == 450 and requests["sent"] == 450 and requests["errors"] == {}
    assert requests["ok"] == 450
    assert result["achieved_rate"] == pytest.approx(150, rel=0.05)
    latency = LatencyHistogram.from_wire(result["latency"])
    service = LatencyHistogram.from_wire(result["service"])
    assert latency.count == service.count == 450
    assert latency.percentile(50) >= service.percentile(50) * 0.9  # from the due time, never shorter
    assert 0 < result["cpu"]["per_worker"][0] < 1
    # every key is 256 bytes under the prefix (random: no two alike), nothing else changed
    assert await asyncio.to_thread(admin.prefix_count, url, "/talbench/run-load/") == 450
    after = keyspace(url)
    written = {k: v for k, v in after.items() if k not in outside}
    assert all(k.startswith(b"/talbench/run-load/") and len(k) == 256 for k in written)
    assert {k: after[k] for k in outside} == outside
    values = [value for value, _ in gateway.get_prefix("/talbench/run-load/")]
    assert len(values) == 450 and {len(value) for value in values} == {1024}  # the value as sent, whole
    gateway.session.close()


@pytest.mark.processes
@needs_etcd
async def test_closed_loop_ceiling_spreads_over_workers_and_members(cluster: LocalCluster) -> None:
    spec = LoadSpec(cluster.client_urls, "/talbench/run-load/", "closed", clients=30, duration=2.0, workers=2)
    result = await run_load(spec)
    assert result["workers"] == 2 and len(result["cpu"]["per_worker"]) == 2
    assert result["requests"]["errors"] == {} and result["requests"]["ok"] > 100
    assert result["achieved_rate"] == pytest.approx(result["requests"]["ok"] / result["elapsed"])
    assert result["requests"]["planned"] == 0 and result["late"]["count"] == 0


@pytest.mark.processes
@needs_etcd
async def test_losing_quorum_mid_load_shows_up_as_errors(cluster: LocalCluster) -> None:
    spec = LoadSpec(
        cluster.client_urls, "/talbench/run-load/", "open", clients=10, duration=4.0, rate=100, request_timeout=1.0
    )
    load = asyncio.ensure_future(run_load(spec))
    give_up = asyncio.get_running_loop().time() + 30
    # until the writes flow (the workers' start takes seconds on a loaded host), then pull quorum
    while await asyncio.to_thread(admin.prefix_count, cluster.client_urls[0], "/talbench/run-load/") < 20:
        assert asyncio.get_running_loop().time() < give_up and not load.done(), "the load never started"
        await asyncio.sleep(0.1)
    for name in cluster.names[1:]:  # two of three gone: no quorum, writes cannot commit
        await cluster.cleanups.release("run-load", cleanup_name(name))
    result = await asyncio.wait_for(load, 30)
    errors = result["requests"]["errors"]
    assert sum(errors.values()) > 0, result["requests"]
    assert result["requests"]["ok"] < 400


@pytest.mark.processes
async def test_an_unreachable_endpoint_stops_the_load_before_it_starts() -> None:
    port = free_ports(1)[0]
    spec = LoadSpec((f"http://127.0.0.1:{port}",), "/talbench/x/", "open", clients=2, duration=1.0, rate=10)
    with pytest.raises(LoadError, match="warm-up failed"):
        await run_load(spec, start_timeout=20)


@pytest.mark.processes
@needs_etcd
async def test_the_probe_reports_members_metrics_and_cleans_its_prefix(cluster: LocalCluster, tmp_path: Path) -> None:
    probe = LOAD
    ctx = ProbeContext("cp1", "run-load", tmp_path, "127.0.0.1", 0, Cleanups())
    params = probe.parse({"endpoints": list(cluster.client_urls), "rate": 100, "clients": 10, "duration": 2})
    result = await probe.run(params, ctx)
    assert result["prefix"] == run_prefix("run-load") == "/talbench/run-load/"
    assert sorted(m["name"] for m in result["members"]) == ["m1", "m2", "m3"]
    assert result["load"]["requests"]["ok"] == 200
    assert result["cleanup"]["remaining"] == 0 and result["cleanup"]["deleted"] == 200
    assert await asyncio.to_thread(admin.prefix_count, cluster.client_urls[0], "/talbench/run-load/") == 0
    for url in cluster.client_urls:
        snapshots = result["metrics"][url]
        before = snapshots["before"]["histograms"][promtext.WAL_FSYNC][0]
        after = snapshots["after"]["histograms"][promtext.WAL_FSYNC][0]
        assert after["count"] - before["count"] >= 1  # every member synced its WAL during the load
        assert len(snapshots["after"]["histograms"][promtext.PEER_RTT]) == 2  # one series per peer
    assert {s["leader"] for s in result["status_after"]} == {result["status_before"][0]["leader"]}


@pytest.mark.processes
@needs_etcd
async def test_the_probe_refuses_a_prefix_that_holds_keys(cluster: LocalCluster, tmp_path: Path) -> None:
    url = cluster.client_urls[0]
    gateway = etcd3gw.Etcd3Client(port=int(url.rsplit(":", 1)[1]), host="127.0.0.1", api_path="/v3/")
    gateway.put("/talbench/run-load/someone-elses", "x")
    gateway.session.close()
    probe = LOAD
    ctx = ProbeContext("cp1", "run-load", tmp_path, "127.0.0.1", 0, Cleanups())
    with pytest.raises(RuntimeError, match="already holds keys"):
        await probe.run(probe.parse({"endpoints": list(cluster.client_urls), "duration": 1}), ctx)
    assert await asyncio.to_thread(admin.prefix_count, url, "/talbench/run-load/") == 1


@pytest.mark.processes
def test_metrics_page_of_a_real_member_parses(tmp_path: Path) -> None:
    if shutil.which("etcd") is None:
        pytest.skip("needs etcd")

    async def fetch() -> str:
        async with local_cluster(1, tmp_path, "run-page") as one:
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(one.client_urls[0] + "/metrics", timeout=5).read().decode()
            )

    parsed = promtext.parse(asyncio.run(fetch()))
    for name in (promtext.WAL_FSYNC, promtext.BACKEND_COMMIT):
        [series] = parsed["histograms"][name]
        assert series["buckets"][-1][0] == "+Inf" and series["count"] == series["buckets"][-1][1]
    assert promtext.counter_total(parsed, "etcd_server_has_leader") == 1


def test_tls_files_travel_to_the_workers() -> None:
    from talbench.agents.probes.etcd.generator import worker_configs

    spec = LoadSpec(
        ("https://10.0.0.1:2379",),
        "/p/",
        "open",
        clients=3,
        duration=1,
        rate=5,
        workers=2,
        tls=TlsFiles("/ca.pem", "/c.pem", "/k.pem"),
    )
    configs = worker_configs(spec, 2)
    assert [c["clients"] for c in configs] == [2, 1] and [c["client_offset"] for c in configs] == [0, 2]
    assert configs[0]["tls"] == {"cacert": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}


@pytest.mark.processes
@needs_etcd
async def test_the_ceiling_is_a_closed_loop(cluster: LocalCluster, tmp_path: Path) -> None:
    ctx = ProbeContext("cp1", "run-load", tmp_path, "127.0.0.1", 0, Cleanups())
    params = LOAD.parse(
        {"endpoints": list(cluster.client_urls), "mode": "ceiling", "clients": 5, "duration": 1, "metrics": False}
    )
    result = await LOAD.run(params, ctx)
    assert result["load"]["mode"] == "closed" and result["load"]["requests"]["planned"] == 0
    assert result["load"]["requests"]["ok"] > 0 and result["metrics"] == {}
    assert result["cleanup"]["remaining"] == 0
