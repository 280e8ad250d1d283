"""The SIMULATOR process of the coordinator's scale benchmark: N simulated nodes' kubelets and
agents in one asyncio process, inside the lab namespace the API server runs in.

    python -m testbed.kubesim.simulator --netns /run/netns/NS      (the checkout's root on sys.path)
        --kubeconfig FILE --sim-id ID --nodes N --data-dir DIR --ready-file FILE

Joins the namespace (setns, as the lab's forwarder does), registers the Nodes, waits until they
are schedulable, writes ``--ready-file`` (JSON: seconds taken), then serves pods and agents until
SIGTERM or SIGINT; then stops every agent, deletes its Nodes and writes its counters to
``--ready-file``.done.  Bounded: it exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

from talbench.bench.kube.client import connect
from talbench.bench.kube.config import resolve_target
from testbed.kubelab.control.forward import join_netns

from .agents import Simulation
from .kubelets import Kubelets
from .nodes import sim_nodes


async def serve(args: argparse.Namespace) -> int:
    nodes = sim_nodes(args.sim_id, args.nodes)
    sim = Simulation(
        zones={n.name: n.zone for n in nodes},
        control_planes=frozenset(n.name for n in nodes if n.control_plane),
        data_dir=Path(args.data_dir),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    async with connect(resolve_target(args.kubeconfig), timeout=60.0) as kube:
        kubelets = Kubelets(kube, sim, args.sim_id, nodes)
        pods = asyncio.ensure_future(kubelets.run_pods())
        try:
            await kubelets.register()
            registered = time.monotonic() - started
            waited = await kubelets.wait_schedulable(args.schedulable_timeout)
            ready = {"registered_s": round(registered, 1), "schedulable_after_s": round(waited, 1)}
            await asyncio.to_thread(Path(args.ready_file).write_text, json.dumps(ready))
            logging.getLogger("testbed.kubesim").info(
                "%d nodes registered in %.1fs, schedulable after %.1fs more", len(nodes), registered, waited
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.max_seconds)
        finally:
            pods.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pods
            await kubelets.stop_agents()
            await kubelets.unregister()
            await asyncio.to_thread(Path(args.ready_file + ".done").write_text, json.dumps(kubelets.counts))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed.kubesim.simulator")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--sim-id", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--schedulable-timeout", type=float, default=600.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("talbench.agents", "sh", "aiohttp"):  # a line per job and request: CPU at 1,000 nodes
        logging.getLogger(noisy).setLevel(logging.WARNING)
    join_netns(args.netns)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
