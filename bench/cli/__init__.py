"""The `talbench` command: its arguments, and main() (here), which hands each command to its
module and maps talbench's own exceptions to exit codes (0 pass, 1 a check failed / no data /
invalid, 2 bad input, 3 could not run, 130 interrupted after cleanup).  Only the CLI prints, and
only main() decides the exit code.
    run        `talbench run`: scenario, dispatcher, results, verdicts (and `--dry-run`'s plan)
    commands   `talbench lab up|down|status`, `clean`, `manifests`, `scenarios`
    compare    `talbench compare BASE NEW`
    report     `talbench report RUN_DIR`
    options    the dispatchers' options, built from the parsed command line
    shared     what the commands share: the interruptible event loop, where the lab lives
    __main__   `python -m talbench.bench.cli`
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from talbench.bench.cli.commands import cmd_clean, cmd_lab, cmd_manifests, cmd_scenarios
from talbench.bench.cli.compare import add_parser as add_compare_parser
from talbench.bench.cli.compare import cmd_compare
from talbench.bench.cli.report import add_parser as add_report_parser
from talbench.bench.cli.report import cmd_report
from talbench.bench.cli.run import cmd_run
from talbench.bench.errors import CouldNotRun, TalbenchError, UsageError
from talbench.bench.run import check_run_id, tool_version

EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="talbench", description="Is this Talos cluster ready for production? Measured, not guessed.")
    parser.add_argument("--version", action="version", version=f"talbench {tool_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run_p = commands.add_parser("run", help="run a scenario and judge the results")
    run_p.add_argument("--scenario", required=True, help="built-in scenario name or a YAML file")
    run_p.add_argument("--target", choices=("lab", "kube"), default="kube", help="where the nodes are (default: kube)")
    run_p.add_argument("--only", default="", help="comma-separated probe or check names")
    run_p.add_argument("--out", default="results", type=Path, help="results directory (default: results)")
    run_p.add_argument("--format", choices=("table", "json"), default="table")
    run_p.add_argument("--quick", action="store_true", help="scale durations down (demos, tests); the report says so")
    run_p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (nodes, pairs measured and why, per-node load, expected duration) and run nothing",
    )
    _lab_shape_options(run_p)
    run_p.add_argument("--lab-root", type=Path, default=None, help=argparse.SUPPRESS)
    _kube_options(run_p)
    run_p.add_argument(
        "--node-selector", action="append", default=[], metavar="K=V[,K=V]", help="kube: only nodes with these labels"
    )
    run_p.add_argument(
        "--image",
        default=None,
        help="kube (required): the agent image, REGISTRY/PATH@sha256:DIGEST or REGISTRY/PATH:TAG, built with "
        "'make image' and pushed with skopeo; lab: the OCI image archive the lab that is up runs its agents "
        "from (a lab the test bed brought up from a checkout: python -m testbed.kubelab up --image ARCHIVE)",
    )
    run_p.add_argument(
        "--image-pull-secret",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="kube: a Secret in --namespace the nodes pull the image with (private registries; repeatable)",
    )
    run_p.add_argument(
        "--keep-results", type=int, default=0, metavar="N", help="kube: keep the last N JSON summaries as ConfigMaps"
    )
    run_p.add_argument(
        "--pushgateway", default=None, metavar="URL", help="push the verdicts to a Prometheus Pushgateway"
    )
    run_p.add_argument(
        "--cluster",
        default=None,
        metavar="NAME",
        help="the cluster's name in the pushed metrics' grouping key (default: the kubeconfig context)",
    )
    live = run_p.add_argument_group("live etcd (opt-in; reads only unless --allow-live-etcd-writes)")
    live.add_argument("--etcd-endpoints", default=None, metavar="URL[,URL]", help="the cluster's etcd client URLs")
    live.add_argument("--etcd-cacert", default=None, metavar="FILE")
    live.add_argument("--etcd-cert", default=None, metavar="FILE")
    live.add_argument("--etcd-key", default=None, metavar="FILE")
    live.add_argument(
        "--etcd-metrics-urls",
        default=None,
        metavar="URL[,URL]",
        help="etcd metrics (Talos: listen-metrics-urls, often :2381)",
    )
    live.add_argument(
        "--allow-live-etcd-writes",
        action="store_true",
        help="write a load under /talbench/<run-id>/ (deleted afterwards)",
    )
    live.add_argument(
        "--etcd-profile", default=None, choices=("s", "m", "l", "xl"), help="load profile for the live etcd (default s)"
    )

    clean_p = commands.add_parser("clean", help="remove what a crashed kube run left in the cluster")
    _kube_options(clean_p)
    clean_p.add_argument("--run-id", default=None, type=check_run_id, help="only this run's objects")

    manifests_p = commands.add_parser("manifests", help="print the Kubernetes manifests (agents, or the CronJob mode)")
    manifests_p.add_argument("--cronjob", action="store_true", help="the scheduled in-cluster coordinator (CronJob)")
    manifests_p.add_argument("--schedule", default=None, help="cron schedule for --cronjob (default: daily)")
    manifests_p.add_argument(
        "--image", default=None, help="(required) the agent image, REGISTRY/PATH@sha256:DIGEST or REGISTRY/PATH:TAG"
    )
    manifests_p.add_argument(
        "--image-pull-secret",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="a Secret in --namespace to pull the image with (repeatable)",
    )
    manifests_p.add_argument(
        "--namespace",
        default=None,
        help="the laptop mode's existing namespace (a Role there), or the CronJob's (default talbench)",
    )
    manifests_p.add_argument(
        "--rbac", action="store_true", help="only the roles a user needs to run talbench (no --image needed)"
    )
    manifests_p.add_argument("--scenario", default="acceptance")
    manifests_p.add_argument("--keep", type=int, default=10, help="summaries the CronJob keeps")
    manifests_p.add_argument("--pushgateway", default=None, metavar="URL")
    manifests_p.add_argument("--cluster", default=None, metavar="NAME", help="with --pushgateway: the cluster's name")
    manifests_p.add_argument(
        "--dashboard", action="store_true", help="print the Grafana dashboard (JSON) of the pushed metrics instead"
    )

    lab_p = commands.add_parser("lab", help="the local multi-node lab (network namespaces)")
    lab_cmds = lab_p.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=_Parser)
    lab_cmds.required = True
    up = lab_cmds.add_parser("up", help="build a lab and start an agent on every node")
    _lab_shape_options(up)
    for name in ("up", "down", "status"):
        sub = (
            up
            if name == "up"
            else lab_cmds.add_parser(
                name, help={"down": "remove the lab and any leftovers", "status": "show the lab"}[name]
            )
        )
        sub.add_argument("--lab-root", type=Path, default=None, help=argparse.SUPPRESS)

    commands.add_parser("scenarios", help="list scenarios with their checks, thresholds and sources")
    add_compare_parser(commands)
    add_report_parser(commands)

    agent_p = commands.add_parser(
        "agent", help="run the node agent (what the lab and the DaemonSet run)", add_help=False
    )
    agent_p.add_argument("agent_args", nargs=argparse.REMAINDER)
    return parser


def _lab_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control-planes", type=int, default=3, metavar="N", help="lab control planes (default 3)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="lab workers (default 1)")
    parser.add_argument(
        "--delay",
        action="append",
        default=[],
        metavar="NODE=MS[:JITTER_MS]",
        help="one-way delay added to a lab node (repeatable)",
    )


def _kube_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--namespace", default=None, help="use this existing namespace instead of one per run")
    parser.add_argument(
        "--delete-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="kube: how long removing the run's objects may take before what is left is reported (default 120)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if argv[:1] == ["agent"]:
        from talbench.agents.main import main as agent_main

        return agent_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace, Console], int] = {
            "run": cmd_run,
            "lab": cmd_lab,
            "scenarios": cmd_scenarios,
            "clean": cmd_clean,
            "manifests": cmd_manifests,
            "compare": cmd_compare,
            "report": cmd_report,
        }[args.command]
        return handler(args, err)
    except TalbenchError as exc:
        err.print(f"talbench: error: {exc}", markup=False)
        if exc.hint:
            err.print(f"hint: {exc.hint}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("talbench: interrupted", markup=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, no traceback unless asked for
        if os.environ.get("TALBENCH_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        err.print(
            f"talbench: internal error: {type(exc).__name__}: {first} (TALBENCH_DEBUG=1 shows the traceback)",
            markup=False,
        )
        return CouldNotRun.exit_code
