"""`talbench run --dry-run` as a user runs it: the plan for the 4-node and the 40-node lab and for
1,000 nodes, printed before anything runs, and nothing built or left behind."""

from __future__ import annotations

import json

import pytest

from tests.bench.cli_helpers import assert_one_line_error, talbench

pytestmark = pytest.mark.processes


def plan(*args: str, tmp_path) -> dict:
    done = talbench(
        "run", "--scenario", "control-plane", "--target", "lab", "--dry-run", "--format", "json",
        "--lab-root", str(tmp_path / "labs"), *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def probe(doc: dict, name: str) -> dict:
    return next(p for p in doc["probes"] if p["probe"] == name)


def check(doc: dict, name: str) -> dict:
    return next(c for c in doc["checks"] if c["check"] == name)


def test_the_default_lab_is_planned_whole_and_nothing_is_built(tmp_path):
    done = talbench("run", "--scenario", "control-plane", "--target", "lab", "--dry-run", "--lab-root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "4 nodes (3 control planes, 1 workers)" in text
    assert "control-plane-rtt" in text and "sampled out" not in text
    assert "rtt" in text and "packets/s per node" in text and "expected duration: at most" in text
    assert "not estimated" not in text  # every probe of the scenario says what it will cost
    # no lab (a lab records itself under its root before it builds anything) and no run directory
    assert not any(tmp_path.iterdir())
    doc = plan(tmp_path=tmp_path)
    assert probe(doc, "rtt")["results"] == 12  # both directions of all 6 pairs
    assert check(doc, "worker-rtt")["subjects"] == 3


def test_forty_nodes_measure_every_control_plane_pair_and_a_bounded_sample_of_the_rest(tmp_path):
    doc = plan("--workers", "37", tmp_path=tmp_path)
    assert doc["nodes"] == {"total": 40, "control_planes": 3, "workers": 37, "zones": 0}
    assert check(doc, "control-plane-rtt")["subjects"] == 3
    worker = check(doc, "worker-rtt")
    assert worker["sampled_out"] == 780 - 3 - worker["subjects"] and worker["budget"] == 6
    rtt = probe(doc, "rtt")
    assert rtt["streams_per_node"]["max"] <= 12  # 6 pairs, both directions, whatever N
    assert rtt["packets_per_s_per_node"]["max"] <= 12 / 0.02
    assert probe(doc, "fsync")["disk_bytes_per_node"]["max"] == 22 << 20
    # a control plane searches and is searched by its 2 control-plane peers and 6 others at most
    assert probe(doc, "mtu")["streams_per_node"]["max"] <= 2 * (2 + 6)
    assert doc["not_estimated"] == []


def test_a_thousand_nodes_cost_each_node_what_forty_do(tmp_path):
    forty_doc = plan("--workers", "37", tmp_path=tmp_path)
    forty = probe(forty_doc, "rtt")
    thousand_doc = plan("--workers", "997", tmp_path=tmp_path)
    thousand = probe(thousand_doc, "rtt")
    assert thousand["streams_per_node"]["max"] == forty["streams_per_node"]["max"]
    assert thousand["duration_s"] == forty["duration_s"]
    for name in ("mtu", "wireguard"):  # per-node cost and time do not grow with the cluster
        assert probe(thousand_doc, name)["duration_s"] == probe(forty_doc, name)["duration_s"], name
    assert thousand["results"] == 2 * (3 + check(thousand_doc, "worker-rtt")["subjects"]) <= 2 * (3 + 3000)
    assert check(thousand_doc, "path-mtu")["subjects"] <= 3000


def test_bad_shapes_are_one_line_and_exit_2(tmp_path):
    assert_one_line_error(
        talbench("run", "--scenario", "control-plane", "--target", "lab", "--dry-run", "--workers", "-1"),
        2,
        "--workers must be between 0 and 100000",
    )
