"""The lab dispatcher: agents in the local lab of network namespaces, reached over unix sockets.

If a lab brought up by ``talbench lab up`` is up under the root, the run uses it and leaves it
up; otherwise it brings its own lab up from the spec and removes it in ``finally`` (also on
cancellation and Ctrl-C).  Blocking lab work runs in a thread so the event loop keeps going.
A lab the test bed brought up (agents in containers, a Kubernetes control plane: testbed/) is a
lab like any other here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiohttp

from talbench.bench.agent_client import AgentClient, AgentError, RequestGate
from talbench.bench.dispatch.base import Fleet
from talbench.bench.lab import lab, processes
from talbench.bench.lab.netns import require_root
from talbench.bench.lab.state import LabNode, LabState
from talbench.bench.lab.topology import LabSpec, new_lab_id, plan_lab
from talbench.bench.model import Node

AGENT_BASE_URL = "http://agent"
DRY_RUN_LAB_ID = "lab000000"  # names the addresses of a lab that is only planned
HEALTH_POLL_INTERVAL = 0.2


class LabDispatcher:
    name = "lab"

    def __init__(
        self,
        root: Path,
        spec: LabSpec,
        *,
        agent_ready_timeout: float | None = None,  # default: lab.ready_timeout for the lab's size
        release_timeout: float = 10.0,
    ) -> None:
        self.root = Path(root)
        self.spec = spec
        self.agent_ready_timeout = agent_ready_timeout  # None: lab.ready_timeout for the lab's size
        self.release_timeout = release_timeout

    async def discover(self) -> tuple[Node, ...]:
        """The lab that is up, else the nodes ``deploy`` would build (nothing is built)."""
        state = await asyncio.to_thread(lab.find_usable, self.root) if self.root.exists() else None
        if state is not None:
            return state.cluster_nodes()
        return tuple(node.to_node() for node in plan_lab(self.spec, DRY_RUN_LAB_ID).nodes)

    @contextlib.asynccontextmanager
    async def deploy(
        self, run_id: str, *, agents_for: Callable[[Sequence[Node]], frozenset[str]] | None = None
    ) -> AsyncIterator[Fleet]:
        # agents_for is not needed: every lab node's agent runs from lab up to lab down
        owned: str | None = None
        up_task: asyncio.Future[LabState] | None = None
        require_root("run --target lab")
        try:
            state = await asyncio.to_thread(lab.find_usable, self.root)
            if state is None:
                await asyncio.to_thread(lab.remove_leftovers)
                owned = new_lab_id()
                up_task = asyncio.ensure_future(
                    asyncio.to_thread(
                        lab.up,
                        self.spec,
                        self.root,
                        lab_id=owned,
                        persistent=False,
                        wait_ready=False,
                    )
                )
                state = await asyncio.shield(up_task)
            async with lab_fleet(
                state,
                run_id,
                ready_timeout=self.agent_ready_timeout or lab.ready_timeout(len(state.nodes)),
                release_timeout=self.release_timeout,
                owned=owned is not None,
            ) as fleet:
                yield fleet
        finally:
            if owned is not None:
                await asyncio.shield(self._remove_owned(owned, up_task))

    async def _remove_owned(self, owned: str, up_task: asyncio.Future[LabState] | None) -> None:
        if up_task is not None:
            await asyncio.wait({up_task})  # the thread runs on even when we were cancelled
            if not up_task.cancelled():
                up_task.exception()  # retrieved: up() already removed what it built
        await asyncio.to_thread(lab.down, self.root, owned)


@contextlib.asynccontextmanager
async def lab_fleet(
    state: LabState,
    run_id: str,
    *,
    ready_timeout: float = 20.0,
    release_timeout: float = 10.0,
    owned: bool = False,
) -> AsyncIterator[Fleet]:
    """The agents of a lab that is up, as a Fleet: one unix-socket session per node, health
    waited for (bounded), and in ``finally`` the run released on every agent and the sessions
    closed.  What the lab dispatcher yields; tests use it on a lab they built."""
    sessions: list[aiohttp.ClientSession] = []
    clients: dict[str, AgentClient] = {}
    gate = RequestGate()  # every agent request of the run: at most GATE_LIMIT at once
    try:
        token = await asyncio.to_thread(state.token)
        for node in state.nodes:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(node.socket)))
            sessions.append(session)
            clients[node.name] = AgentClient(node.name, session, AGENT_BASE_URL, token, gate=gate)
        reasons = await asyncio.gather(
            *(_wait_healthy(node, clients[node.name], ready_timeout) for node in state.nodes)
        )
        unready = {node.name: reason for node, reason in zip(state.nodes, reasons, strict=True) if reason is not None}
        yield Fleet(
            run_id=run_id,
            nodes=state.cluster_nodes(),
            agents={name: client for name, client in clients.items() if name not in unready},
            unready=unready,
            target="lab",
            agent_port=state.nodes[0].port,
            teardown="releasing the run on every agent"
            + (", then removing the lab the run brought up" if owned else ""),
            metadata={
                "lab_id": state.lab_id,
                "lab_dir": str(state.lab_dir),
                "lab_owned_by_run": owned,
                "delays": {d.node: {"delay_ms": d.delay_ms, "jitter_ms": d.jitter_ms} for d in state.delays},
                "image": dict(state.launcher) if state.launcher is not None else None,
            },
        )
    finally:
        await asyncio.shield(_close(run_id, clients, sessions, release_timeout))


async def _close(
    run_id: str, clients: dict[str, AgentClient], sessions: list[aiohttp.ClientSession], release_timeout: float
) -> None:
    try:
        if clients:
            await asyncio.gather(*(_release(client, run_id, release_timeout) for client in clients.values()))
    finally:
        for session in sessions:
            await session.close()


async def _release(client: AgentClient, run_id: str, release_timeout: float) -> None:
    try:
        await asyncio.wait_for(client.release_run(run_id), release_timeout)
    except (TimeoutError, AgentError, OSError):
        pass


async def _wait_healthy(node: LabNode, client: AgentClient, ready_timeout: float) -> str | None:
    """None once the agent answers health; else (at the deadline) why it did not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    reason = "no answer"
    while True:
        if node.pid is not None and not processes.alive(node.pid):
            tail = processes.log_tail(node.log, 3)
            return "agent exited" + (f": {tail}" if tail else "")
        remaining = deadline - loop.time()
        if remaining <= 0:
            return f"agent not healthy within {ready_timeout:g}s ({reason})"
        try:
            answer = await asyncio.wait_for(client.health(), min(remaining, 5.0))
            if answer.get("status") == "ok":
                return None
            reason = f"health status {answer.get('status')!r}"
        except (TimeoutError, AgentError) as exc:
            reason = str(exc) or type(exc).__name__
        await asyncio.sleep(min(HEALTH_POLL_INTERVAL, max(0.0, deadline - loop.time())))
