"""WireGuard / KubeSpan overhead, coordinator side: the driver.

It measures every control-plane pair and a bounded, deterministic sample of the other pairs,
one after the other (throughput tests on shared links and CPUs disturb each other); each pair's
test tunnel, RTT and iperf3 runs are in bench/probes/wireguard/pair.py.  It also reads each
node's KubeSpan state.

Result keys: ``wireguard:a->b`` per pair (a < b), ``wireguard:node`` (KubeSpan on that node),
``wireguard:cluster`` (CLUSTER_NODE: KubeSpan on every node, for the cluster-shape rule).  The
metrics are in bench/probes/wireguard/metrics.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence

from talbench.agents.probes.wireguard.probe import PROBE, TUNNEL_JOB, WireguardSettings
from talbench.bench.dispatch.base import Fleet
from talbench.bench.errors import ScenarioError
from talbench.bench.metric import Metric, ProbeCost, Progress
from talbench.bench.model import CLUSTER_NODE, Measurement, Node, ResultKey
from talbench.bench.probes.base import DeclaredDriver
from talbench.bench.probes.wireguard.metrics import NAME, WIREGUARD_METRICS
from talbench.bench.probes.wireguard.pair import SCHEMA, PairMeasurement, failed_measurement

DETECT_DEADLINE = 30.0
PAIR_SETUP_S = 3.0  # both tunnel links up and peered, then down, on a quiet node: the plan's estimate
IPERF_START_S = 1.0  # iperf3's server and client coming up and shaking hands


# ---------------------------------------------------------------------------------------------
# which pairs


def pair_sample(
    pairs: Sequence[tuple[str, str]], control_planes: set[str], max_other: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(measured, left out): every control-plane pair, plus at most ``max_other`` other pairs
    chosen by a stable hash of their names (the same cluster always gets the same sample)."""
    control = sorted(p for p in pairs if set(p) <= control_planes)
    others = sorted(
        (p for p in pairs if not set(p) <= control_planes),
        key=lambda p: hashlib.sha256("|".join(p).encode()).hexdigest(),
    )
    return control + sorted(others[:max_other]), sorted(others[max_other:])


# ---------------------------------------------------------------------------------------------
# the driver


class WireguardDriver(DeclaredDriver[WireguardSettings]):
    name = NAME
    declaration = PROBE
    settings_model = WireguardSettings

    def settings(self, raw: Mapping[str, object], *, quick: bool) -> WireguardSettings:
        settings: WireguardSettings = super().settings(raw, quick=quick)
        if settings.min_rtt_samples > settings.rtt_count:
            raise ScenarioError(f"min_rtt_samples {settings.min_rtt_samples} exceeds rtt_count {settings.rtt_count}")
        return settings

    def quicken(self, settings: WireguardSettings) -> WireguardSettings:
        # Demos and tests: short transfers, fewer RTT samples (still enough for a p99).
        count = min(settings.rtt_count, 150)
        return settings.model_copy(
            update={
                "duration": min(settings.duration, 2.0),
                "omit": 0,
                "rtt_count": count,
                "min_rtt_samples": min(settings.min_rtt_samples, count // 2),
            }
        )

    def metrics(self) -> Sequence[Metric]:
        return WIREGUARD_METRICS

    def cost(self, keys: frozenset[ResultKey], settings: WireguardSettings, nodes: Sequence[Node]) -> ProbeCost:
        """The sampled pairs one after the other, each: tunnel set-up, both paths' round trips in
        one job, then iperf3 on the node path and through the tunnel (``duration`` + ``omit``
        each); a pair's two nodes carry one stream each way at a time."""
        pairs = sorted((k.node, k.peer) for k in keys if k.peer is not None)
        control = {n.name for n in nodes if n.is_control_plane}
        measured, left_out = pair_sample(pairs, control, settings.max_other_pairs)
        round_trips = 2 * (settings.rtt_warmup + settings.rtt_count) * settings.rtt_interval
        per_pair = PAIR_SETUP_S + round_trips + 2 * (settings.duration + settings.omit + IPERF_START_S)
        streams: dict[str, int] = {}
        for a, b in measured:
            for node in (a, b):
                streams[node] = 1  # the pairs run one at a time
        return ProbeCost(
            self.name,
            duration_s=len(measured) * per_pair,
            streams=streams,
            note=f"{len(measured)} pair(s) measured one at a time, about {per_pair:.0f} s each"
            + (f"; {len(left_out)} pairs left out of the bounded sample" if left_out else ""),
        )

    async def measure(
        self, keys: frozenset[ResultKey], fleet: Fleet, settings: WireguardSettings, progress: Progress
    ) -> list[Measurement]:
        results: list[Measurement] = []
        pairs = sorted((k.node, k.peer) for k in keys if k.peer is not None)
        node_keys = sorted(k for k in keys if k.peer is None)
        if node_keys:
            results += await _kubespan(node_keys, fleet)
        control = {n.name for n in fleet.nodes if n.is_control_plane}
        measured, left_out = pair_sample(pairs, control, settings.max_other_pairs)
        for a, b in left_out:
            results.append(
                Measurement(
                    ResultKey(NAME, a, b),
                    True,
                    data={
                        "schema": SCHEMA,
                        "sampled": False,
                        "reason": f"outside the bounded sample of other pairs (max_other_pairs={settings.max_other_pairs})",
                    },
                )
            )
        progress.update(
            NAME, done=0, total=len(measured), note=f"{len(measured)} pair(s), {settings.duration:g}s per iperf3 path"
        )
        for index, (a, b) in enumerate(measured):
            progress.update(NAME, done=index, total=len(measured), note=f"{a} -> {b}")
            results.append(await PairMeasurement(index, a, b, fleet, settings).measure())
        progress.update(NAME, done=len(measured), total=len(measured), note="done")
        return results


# -- KubeSpan state per node ---------------------------------------------------------------------


async def _kubespan(node_keys: list[ResultKey], fleet: Fleet) -> list[Measurement]:
    names = sorted(fleet.agents)
    outcomes = await asyncio.gather(
        *(
            fleet.agents[n].run_job(TUNNEL_JOB.name, {"action": "detect"}, fleet.run_id, deadline=DETECT_DEADLINE)
            for n in names
        )
    )
    by_node = dict(zip(names, outcomes, strict=True))
    results = []
    for key in node_keys:
        if key.node == CLUSTER_NODE:
            states = {n: dict(o.result.get("kubespan") or {}) for n, o in by_node.items() if o.ok}
            unknown = {n: o.error or "failed" for n, o in by_node.items() if not o.ok}
            unknown.update({n: f"agent not ready: {r}" for n, r in fleet.unready.items()})
            results.append(Measurement(key, True, data={"schema": SCHEMA, "kubespan": states, "unknown": unknown}))
            continue
        outcome = by_node.get(key.node)
        if outcome is None:
            results.append(Measurement(key, False, error=f"no agent on {key.node}"))
        elif not outcome.ok:
            results.append(failed_measurement(key, outcome))
        else:
            results.append(
                Measurement(
                    key,
                    True,
                    data={"schema": SCHEMA, "kubespan": dict(outcome.result.get("kubespan") or {})},
                    started=outcome.started,
                    ended=outcome.ended,
                )
            )
    return results


DRIVER = WireguardDriver()
