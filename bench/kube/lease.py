"""A run's deadline, renewed while the run lasts.

Everything a run creates carries ``talbench.io/deadline`` (manifests.ANNOTATION_DEADLINE):
``talbench clean`` without ``--run-id`` leaves a run alone until then (deploy.clean).  A run
that lasts longer than manifests.RUN_DEADLINE_S must not be taken for one that died, so while it
runs its deadline is moved forward every ``RENEW_EVERY_S``: on its namespace (a run in its own
namespace) or on its DaemonSet (``--namespace``), whichever ``clean`` reads for the run.

A renewal that fails is said in the run's metadata (``kube.deadline``) and never stops the run;
one refused (403: roles printed by an older talbench, without ``patch``) is not tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from talbench.bench.errors import CouldNotRun, NoPermission
from talbench.bench.kube import manifests as m
from talbench.bench.kube.client import KubeApiError, KubeClient, path

RENEW_EVERY_S = 600.0


def deadline_holder(spec: m.AgentSpec) -> str:
    """The API path of the object whose deadline ``clean`` reads for this run."""
    if spec.own_namespace:
        return path("v1", "namespaces", name=spec.namespace)
    return path("apps/v1", "daemonsets", spec.namespace, spec.name)


async def renew(kube: KubeClient, spec: m.AgentSpec, *, now: float | None = None) -> str:
    """Move the run's deadline to ``now`` + RUN_DEADLINE_S; returns the new deadline."""
    deadline = m.deadline_text((time.time() if now is None else now) + m.RUN_DEADLINE_S)
    patch = {"metadata": {"annotations": {m.ANNOTATION_DEADLINE: deadline}}}
    await kube.merge_patch(deadline_holder(spec), patch)
    return deadline


@contextlib.asynccontextmanager
async def deadline_kept(
    kube: KubeClient,
    spec: m.AgentSpec,
    state: dict[str, Any],
    *,
    every: float = RENEW_EVERY_S,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[None]:
    """Renew the run's deadline every ``every`` seconds while the body runs.  ``state`` (the
    run's metadata, edited in place) says how often it was renewed, until when, and any problem."""
    state.update({"renew_every_s": every, "renewed": 0})

    async def keep() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                state["until"] = await renew(kube, spec, now=clock())
                state["renewed"] += 1
            except NoPermission as exc:
                state["problem"] = f"not renewed: {exc} (another user's 'talbench clean' may remove this run)"
                return
            except (KubeApiError, CouldNotRun) as exc:  # a busy or unreachable API server: next time
                state["problem"] = f"a renewal failed: {exc}"

    task = asyncio.ensure_future(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
