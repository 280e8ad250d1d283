"""The test bed's entry point, from a checkout: the process lab with its agents in containers
(``--image``) and a real Kubernetes control plane with the lab kubelet (``--kubernetes``).

    python -m testbed.kubelab up [--control-planes N] [--workers N] [--delay NODE=MS[:JITTER_MS]]
                                 [--image ARCHIVE] [--kubernetes]
    python -m testbed.kubelab status
    python -m testbed.kubelab down

Labs live under $TALBENCH_LAB_ROOT (default /var/tmp/talbench/labs), where ``talbench run
--target lab`` finds them; ``talbench lab down`` removes them as well (what the test bed leaves
is on record in the lab: talbench.bench.lab.addons).  Exit codes as talbench's: 0 up and
healthy, 1 not healthy (or no lab), 2 bad usage, 3 could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from talbench.agents import wire
from talbench.bench.errors import TalbenchError
from talbench.bench.lab import lab as labs
from talbench.bench.lab.addons import LabAddOn
from talbench.bench.lab.status import LabStatus
from talbench.bench.lab.topology import make_spec
from testbed.image.runner import ImageLauncher
from testbed.kubelab.addon import KubernetesAddOn
from testbed.kubelab.control import binaries

DEFAULT_LAB_ROOT = "/var/tmp/talbench/labs"  # talbench's own (bench/cli/shared.py): its labs are ours
# The DaemonSet's agents (run by the lab kubelet in the nodes' namespaces) listen on the default
# port: the lab's own agents move aside.
KUBERNETES_LAB_AGENT_PORT = wire.DEFAULT_PORT + 1
STATUS_ADDONS: tuple[LabAddOn, ...] = (KubernetesAddOn(),)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testbed.kubelab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)
    up = commands.add_parser("up", help="build a lab, start its agents (and a Kubernetes control plane)")
    up.add_argument("--control-planes", type=int, default=3, metavar="N", help="lab control planes (default 3)")
    up.add_argument("--workers", type=int, default=1, metavar="N", help="lab workers (default 1)")
    up.add_argument(
        "--delay", action="append", default=[], metavar="NODE=MS[:JITTER_MS]", help="one-way delay (repeatable)"
    )
    up.add_argument(
        "--image",
        type=Path,
        default=None,
        metavar="ARCHIVE",
        help="run the agents from this OCI image archive (make image), each in a runc container with the "
        "DaemonSet's pod context (default: agents as processes)",
    )
    up.add_argument(
        "--kubernetes",
        action="store_true",
        help="also run a real Kubernetes control plane on the lab (binaries from make kubernetes) and "
        "write an admin kubeconfig into the lab's directory",
    )
    commands.add_parser("status", help="show the lab")
    commands.add_parser("down", help="remove the lab and any leftovers")
    for sub in commands.choices.values():
        sub.add_argument("--lab-root", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def lab_root(args: argparse.Namespace) -> Path:
    return args.lab_root or Path(os.environ.get("TALBENCH_LAB_ROOT", DEFAULT_LAB_ROOT))


def up(args: argparse.Namespace) -> int:
    spec = make_spec(args.control_planes, args.workers, args.delay)
    root = lab_root(args)
    if args.kubernetes:
        binaries.locate()  # a missing binary stops here, before anything is built
    launcher: ImageLauncher | None = None
    if args.image is not None:
        from testbed.image.pod import image_launcher

        launcher = image_launcher(args.image)  # unpacked (or found in the cache) before anything is built
    addons: tuple[LabAddOn, ...] = ()
    port = wire.DEFAULT_PORT
    if args.kubernetes:
        images = (launcher.image,) if launcher is not None else ()
        addons = (KubernetesAddOn(images=images),)
        port = KUBERNETES_LAB_AGENT_PORT
    state = labs.up(spec, root, agent_port=port, launcher=launcher, addons=addons)
    print(f"lab {state.lab_id} is up: {', '.join(n.name for n in state.nodes)}")
    return show(labs.status(root, addons=STATUS_ADDONS))


def show(status: LabStatus | None) -> int:
    if status is None:
        print("no lab is up")
        return 1
    print(status.render())
    return 0 if status.healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            return up(args)
        if args.command == "down":
            print(labs.down(lab_root(args)))
            return 0
        return show(labs.status(lab_root(args), addons=STATUS_ADDONS))
    except TalbenchError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
