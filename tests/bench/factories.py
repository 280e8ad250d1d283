"""Small builders for records used across coordinator tests."""

from __future__ import annotations

from talbench.bench.model import CONTROL_PLANE_LABEL, Measurement, Node, ResultKey, Role


def nodes(control_planes: int = 3, workers: int = 1) -> tuple[Node, ...]:
    made = [
        Node(f"cp{i}", Role.CONTROL_PLANE, f"10.213.0.{10 + i}", {CONTROL_PLANE_LABEL: ""})
        for i in range(1, control_planes + 1)
    ]
    made += [Node(f"w{i}", Role.WORKER, f"10.213.0.{100 + i}", {}) for i in range(1, workers + 1)]
    return tuple(made)


def rtt(
    node: str, peer: str, samples_ms: list[float], *, sent: int | None = None, cpu: float = 5.0, min_samples: int = 1
) -> Measurement:
    samples_ns = [int(ms * 1e6) for ms in samples_ms]
    sent = len(samples_ns) if sent is None else sent
    return Measurement(
        ResultKey("rtt", node, peer),
        True,
        data={"sent": sent, "received": len(samples_ns), "samples_ns": samples_ns, "min_samples": min_samples},
        resources={"cpu_process_percent": cpu},
    )
