"""Past ``raw_limit`` the RTT driver keeps histograms for the pairs beyond the control planes',
made as each agent answers (the coordinator never holds every agent's raw samples at once), and
raw samples for the control-plane pairs.  The agents here are stand-ins that answer a job with a
raw RTT result of a known shape; what is under test is the driver's bookkeeping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from talbench.bench.agent_client import JobOutcome
from talbench.bench.dispatch.base import Fleet
from talbench.bench.metric import NullProgress
from talbench.bench.model import ResultKey
from talbench.bench.probes.rtt.driver import RttDriver
from tests.bench.factories import nodes

SAMPLES = [100_000 + 1_000 * i for i in range(50)]


class Answering:
    """An agent stand-in: every rtt job answers with SAMPLES for each peer it was given."""

    def __init__(self, node: str, log: list[str]) -> None:
        self.node = node
        self.log = log

    async def run_job(self, probe: str, params: Mapping[str, Any], run_id: str, *, deadline: float) -> JobOutcome:
        self.log.append(self.node)
        peers = {
            p["name"]: {"sent": 50, "received": 50, "samples_ns": SAMPLES, "dwell_ns": [10] * 50, "stamps": {}}
            for p in params["peers"]
        }
        return JobOutcome(True, {"peers": peers}, started=1.0, ended=2.0)


async def test_beyond_raw_limit_other_pairs_keep_histograms_and_control_plane_pairs_raw() -> None:
    cluster = nodes(3, 3)
    log: list[str] = []
    fleet = Fleet("run-c", cluster, {n.name: Answering(n.name, log) for n in cluster})
    driver = RttDriver()
    settings = driver.settings({"count": 50, "raw_limit": 100, "min_samples": 1}, quick=False)
    keys = frozenset(ResultKey("rtt", a.name, b.name) for a in cluster for b in cluster if a is not b)
    measured = {m.key: m for m in await driver.run(keys, fleet, settings, NullProgress())}
    assert set(measured) == keys and all(m.ok for m in measured.values())
    control = {"cp1", "cp2", "cp3"}
    for key, m in measured.items():
        if key.node in control and key.peer in control:
            assert m.data["samples_ns"] == SAMPLES and "histogram_ns" not in m.data
        else:
            assert "samples_ns" not in m.data and m.data["histogram_ns"].count == 50, key
    raw = driver.settings({"count": 50, "min_samples": 1}, quick=False)  # the default limit: all raw
    measured = await driver.run(keys, fleet, raw, NullProgress())
    assert all("samples_ns" in m.data for m in measured)
