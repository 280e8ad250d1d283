"""The commands besides `run`: `talbench lab up|down|status`, `clean`, `manifests` and
`scenarios`.  Part of the CLI (main() in bench/cli/__init__.py maps what they raise to exit codes)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from talbench.bench import scenario as scenario_files
from talbench.bench.cli.shared import lab_root, run_async
from talbench.bench.errors import ScenarioError
from talbench.bench.judge import threshold_text
from talbench.bench.probes import default_drivers
from talbench.bench.run import metrics_of

if TYPE_CHECKING:
    from talbench.bench.lab.status import LabStatus

# ---------------------------------------------------------------------------------------- lab


def cmd_lab(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.lab import lab as labs
    from talbench.bench.lab.topology import make_spec

    out = Console(highlight=False)
    root = lab_root(args)
    if args.lab_command == "up":
        spec = make_spec(args.control_planes, args.workers, args.delay)
        state = labs.up(spec, root)  # UsageError when a lab is up under root
        out.print(f"lab {state.lab_id} is up: {', '.join(n.name for n in state.nodes)}")
        return _print_status(labs.status(root), out)
    if args.lab_command == "down":
        report = labs.down(root)
        out.print(str(report))
        return 0
    status = labs.status(root)
    if status is None:
        out.print("no lab is up")
        return 1
    return _print_status(status, out)


def _print_status(status: LabStatus | None, out: Console) -> int:
    if status is None:
        return 1
    out.print(status.render())
    return 0 if status.healthy else 1


# ------------------------------------------------------------------------------ kube helpers


def cmd_clean(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.cli.options import kube_options
    from talbench.bench.dispatch.kube import KubeDispatcher

    # one line per namespace or run: removed, or left alone (a run in flight) and how to remove it
    lines = run_async(KubeDispatcher(kube_options(args)).clean(run_id=args.run_id), err)
    out = Console(highlight=False, soft_wrap=True)
    out.print("\n".join(lines) if lines else "nothing to remove", markup=False)
    return 0


def cmd_manifests(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.kube.cronjob import header, manifests
    from talbench.bench.kube.rbac import commented_yaml

    if args.dashboard:
        from talbench.bench.report.dashboard import dashboard_text

        sys.stdout.write(dashboard_text())
        return 0
    docs = manifests(
        cronjob=args.cronjob,
        schedule=args.schedule,
        image=args.image,
        namespace=args.namespace,
        scenario=args.scenario,
        keep=args.keep,
        pushgateway=args.pushgateway,
        cluster=args.cluster,
        pull_secrets=args.image_pull_secret,
        rbac_only=args.rbac,
    )
    sys.stdout.write(commented_yaml(docs, header(docs, cronjob=args.cronjob)))
    return 0


# ---------------------------------------------------------------------------------- scenarios


def cmd_scenarios(args: argparse.Namespace, err: Console) -> int:
    """Every built-in scenario from its declaration: checks (each once, one source) and the
    parameters of the probes it uses (bench/report/scenarios_text.py)."""
    from talbench.bench.report.scenarios_text import scenario_lines

    drivers = default_drivers()
    metrics = metrics_of(drivers)
    out = Console(highlight=False, soft_wrap=True)
    for name, path in sorted(scenario_files.builtin_scenarios().items()):
        try:
            composition = scenario_files.load_composition(path, metrics)
        except ScenarioError as exc:
            err.print(f"talbench: scenario {name} is not usable: {exc}", markup=False)
            continue
        thresholds = {c.name: threshold_text(c, metrics[c.metric]) for c in composition.scenario.checks}
        header, *lines = scenario_lines(composition, thresholds, drivers)
        out.print(header, style="bold", markup=False)
        for line in lines:
            out.print(line, markup=False)
        out.print("")
    return 0
