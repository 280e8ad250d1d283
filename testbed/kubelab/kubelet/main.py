"""The lab kubelet: keeps the Kubernetes lab's Nodes Ready and runs the pods bound to them from
the talbench image under runc, in the nodes' network namespaces (``python -m testbed.kubelab up
--kubernetes [--image ARCHIVE]`` starts it, ``lab down`` stops it).

    python -m testbed.kubelab.kubelet --config <lab_dir>/kubernetes/kubelet/kubelet.json

One process serves every node of the lab, each node with its own client certificate
(``system:node:<name>``), so the API server authorizes each node's calls as a real kubelet's
(Node authorizer, NodeRestriction).  One process rather than one per node: the nodes are
namespaces of one small host, one interpreter instead of N, and nothing is
shared between nodes but the event loop (testbed/kubelab/kubelet/node.py has one API session, one
heartbeat and one pod watch per node).  It joins the first control plane's network namespace
(setns: its mount namespace stays the host's, where runc finds the cgroups), beside the API
server, so ``lab down`` stops it with the control plane (and its namespace sweep ends it in any
case).  On SIGTERM it returns at once and leaves the containers running, as a real kubelet
does; ``lab down`` then stops them (testbed/image/down.py, the teardown on record: TERM,
grace, KILL, delete).

The package's __init__ lists its parts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from testbed.kubelab.control.forward import join_netns
from testbed.kubelab.kubelet import api as kubelet_api
from testbed.kubelab.kubelet import config as kubelet_config
from testbed.kubelab.kubelet import prism as kubelet_prism
from testbed.kubelab.kubelet import server as kubelet_server
from testbed.kubelab.kubelet.config import KubeletConfig
from testbed.kubelab.kubelet.container import NodeContext
from testbed.kubelab.kubelet.node import NodeKubelet

MODULE = "testbed.kubelab.kubelet"


async def serve(
    config: KubeletConfig, sockets: Mapping[str, socket.socket], prism: Mapping[str, socket.socket]
) -> None:
    """Run every node's kubelet (its endpoint on ``sockets``, KubePrism on ``prism``) until
    SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        kubelets = {}
        for node in config.nodes:
            api = await stack.enter_async_context(kubelet_api.connect(config.server, config.ca, node.cert, node.key))
            kubelets[node.name] = NodeKubelet(NodeContext(config, node, api))
        finders = {name: kubelet.find_log for name, kubelet in kubelets.items()}
        await stack.enter_async_context(kubelet_server.serving(config, sockets, finders))
        server = urlsplit(config.server)
        await stack.enter_async_context(kubelet_prism.serving(prism, server.hostname or "", server.port or 443))
        tasks = [asyncio.create_task(kubelet.run()) for kubelet in kubelets.values()]
        logging.getLogger(MODULE).info(
            "serving %s with %d image(s)", ", ".join(n.name for n in config.nodes), len(config.images)
        )
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE, description="the talbench lab's kubelet")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--netns", default=None, help="join this network namespace first (a /run/netns path)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    try:
        config = kubelet_config.load(args.config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"lab kubelet: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        sockets = kubelet_server.listen(config)  # in each node's namespace
        prism = kubelet_server.listen(config, kubelet_prism.PORT, kubelet_prism.HOST)
    except OSError as exc:
        print(f"lab kubelet: cannot listen on the nodes' ports: {exc}", file=sys.stderr)
        return 2
    if args.netns:
        join_netns(args.netns)  # only the network: the mount namespace (cgroups for runc) stays the host's
    asyncio.run(serve(config, sockets, prism))
    return 0


if __name__ == "__main__":
    sys.exit(main())
