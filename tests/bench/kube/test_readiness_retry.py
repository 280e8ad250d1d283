"""The readiness wait through a busy API server: a pod list that times out or meets a 503 is
asked again at the next poll (a 1,000-pod list took over 15 s on a saturated control plane and
ended a whole run with exit 3); a refusal that waiting cannot fix still ends it at once."""

from __future__ import annotations

from typing import Any

import pytest

from talbench.bench.cluster_facts import NodeFacts
from talbench.bench.errors import CouldNotRun, NoPermission
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeApiError
from talbench.bench.kube.deploy import wait_for_agents
from talbench.bench.model import Role

SPEC = m.AgentSpec(run_id="run-retry1", namespace="talbench-run-retry1", image="localhost/talbench:v1", token="t")
NODES = [NodeFacts("cp1", Role.CONTROL_PLANE, "10.0.0.1"), NodeFacts("w1", Role.WORKER, "10.0.0.2")]


def ready_pod(node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"agent-{node}"},
        "spec": {"nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


class BusyApi:
    """Answers the pod list with ``answers`` in turn (an exception is raised), then Ready pods."""

    def __init__(self, *answers: BaseException) -> None:
        self.answers = list(answers)
        self.lists = 0

    async def list(self, api_path: str, **_: Any) -> list[dict[str, Any]]:
        assert "/pods" in api_path, api_path
        self.lists += 1
        if self.answers:
            raise self.answers.pop(0)
        return [ready_pod(n.name) for n in NODES]


async def test_a_slow_or_busy_api_server_is_asked_again_at_the_next_poll() -> None:
    api = BusyApi(
        CouldNotRun("the Kubernetes API server did not answer GET pods within 15s"),
        KubeApiError(503, "Service Unavailable", "the server is currently unable to handle the request"),
        KubeApiError(429, "Too Many Requests", "too many requests"),
    )
    readiness = await wait_for_agents(api, SPEC, NODES, timeout=30, poll_interval=0.01)  # type: ignore[arg-type]
    assert api.lists == 4
    assert readiness.pods == {"cp1": "agent-cp1", "w1": "agent-w1"} and readiness.unready == {}


async def test_a_refusal_or_an_api_server_busy_past_the_timeout_ends_the_wait_with_the_reason() -> None:
    with pytest.raises(NoPermission):
        await wait_for_agents(BusyApi(NoPermission("forbidden")), SPEC, NODES, timeout=30, poll_interval=0.01)  # type: ignore[arg-type]
    with pytest.raises(KubeApiError):
        await wait_for_agents(BusyApi(KubeApiError(404, "Not Found", "x")), SPEC, NODES, timeout=30, poll_interval=0.01)  # type: ignore[arg-type]
    busy = BusyApi(*[KubeApiError(503, "Service Unavailable", "busy")] * 100)
    with pytest.raises(CouldNotRun, match=r"could not be listed within 0\.05s: HTTP 503"):
        await wait_for_agents(busy, SPEC, NODES, timeout=0.05, poll_interval=0.01)  # type: ignore[arg-type]
