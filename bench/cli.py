"""The `talbench` command.  The only module that prints or exits: it maps talbench's own
exceptions to exit codes (0 pass, 1 a check failed / no data / invalid, 2 bad input,
3 could not run, 130 interrupted after cleanup)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Coroutine, Sequence

from rich.console import Console

from talbench.bench import scenario as scenario_files
from talbench.bench.judge import threshold_text
from talbench.bench.errors import CouldNotRun, ScenarioError, TalbenchError, UsageError
from talbench.bench.model import Check, Measurement, RunRecord
from talbench.bench.plan import select_checks
from talbench.bench.probes import default_drivers
from talbench.bench.probes.base import ProbeDriver
from talbench.bench.report import junit, runjson, table
from talbench.bench.report.files import write_atomically
from talbench.bench.run import RunRequest, check_run_id, exit_code, metrics_of, new_run_id, run, tool_version

EXIT_INTERRUPTED = 130
DEFAULT_LAB_ROOT = "/var/tmp/talbench/labs"


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
    _lab_shape_options(run_p)
    run_p.add_argument("--lab-root", type=Path, default=None, help=argparse.SUPPRESS)
    _kube_options(run_p)
    run_p.add_argument("--node-selector", action="append", default=[], metavar="K=V[,K=V]", help="kube: only nodes with these labels")
    run_p.add_argument("--image", default=None, help="kube: agent image (default: tied to this version)")
    run_p.add_argument("--keep-results", type=int, default=0, metavar="N", help="kube: keep the last N JSON summaries as ConfigMaps")
    run_p.add_argument("--pushgateway", default=None, metavar="URL", help="push the verdicts to a Prometheus Pushgateway")
    live = run_p.add_argument_group("live etcd (opt-in; reads only unless --allow-live-etcd-writes)")
    live.add_argument("--etcd-endpoints", default=None, metavar="URL[,URL]", help="the cluster's etcd client URLs")
    live.add_argument("--etcd-cacert", default=None, metavar="FILE")
    live.add_argument("--etcd-cert", default=None, metavar="FILE")
    live.add_argument("--etcd-key", default=None, metavar="FILE")
    live.add_argument("--etcd-metrics-urls", default=None, metavar="URL[,URL]", help="etcd metrics (Talos: listen-metrics-urls, often :2381)")
    live.add_argument("--allow-live-etcd-writes", action="store_true", help="write a load under /talbench/<run-id>/ (deleted afterwards)")
    live.add_argument("--etcd-profile", default=None, choices=("s", "m", "l", "xl"), help="load profile for the live etcd (default s)")

    clean_p = commands.add_parser("clean", help="remove what a crashed kube run left in the cluster")
    _kube_options(clean_p)
    clean_p.add_argument("--run-id", default=None, type=check_run_id, help="only this run's objects")

    manifests_p = commands.add_parser("manifests", help="print the Kubernetes manifests (agents, or the CronJob mode)")
    manifests_p.add_argument("--cronjob", action="store_true", help="the scheduled in-cluster coordinator (CronJob)")
    manifests_p.add_argument("--schedule", default=None, help="cron schedule for --cronjob (default: daily)")
    manifests_p.add_argument("--image", default=None)
    manifests_p.add_argument("--namespace", default="talbench")
    manifests_p.add_argument("--scenario", default="acceptance")
    manifests_p.add_argument("--keep", type=int, default=10, help="summaries the CronJob keeps")
    manifests_p.add_argument("--pushgateway", default=None, metavar="URL")

    lab_p = commands.add_parser("lab", help="the local multi-node lab (network namespaces)")
    lab_cmds = lab_p.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=_Parser)
    lab_cmds.required = True
    up = lab_cmds.add_parser("up", help="build a lab and start an agent on every node")
    _lab_shape_options(up)
    for name in ("up", "down", "status"):
        sub = up if name == "up" else lab_cmds.add_parser(name, help={"down": "remove the lab and any leftovers", "status": "show the lab"}[name])
        sub.add_argument("--lab-root", type=Path, default=None, help=argparse.SUPPRESS)

    commands.add_parser("scenarios", help="list scenarios with their checks, thresholds and sources")

    agent_p = commands.add_parser("agent", help="run the node agent (what the lab and the DaemonSet run)", add_help=False)
    agent_p.add_argument("agent_args", nargs=argparse.REMAINDER)
    return parser


def _lab_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control-planes", type=int, default=3, metavar="N", help="lab control planes (default 3)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="lab workers (default 1)")
    parser.add_argument(
        "--delay", action="append", default=[], metavar="NODE=MS[:JITTER_MS]", help="one-way delay added to a lab node (repeatable)"
    )


def _kube_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--namespace", default=None, help="use this existing namespace instead of one per run")


def _lab_root(args: argparse.Namespace) -> Path:
    return args.lab_root or Path(os.environ.get("TALBENCH_LAB_ROOT", DEFAULT_LAB_ROOT))


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
        err.print(f"talbench: internal error: {type(exc).__name__}: {first} (TALBENCH_DEBUG=1 shows the traceback)", markup=False)
        return CouldNotRun.exit_code


def _run_async(coro: Coroutine[Any, Any, Any], err: Console) -> Any:
    """Run ``coro``; SIGINT/SIGTERM cancel it once (its finally blocks clean up), further signals
    during cleanup are acknowledged but do not cut the cleanup short."""

    async def guarded() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupted = []

        def on_signal() -> None:
            if interrupted:
                err.print("talbench: still cleaning up, please wait", markup=False)
                return
            interrupted.append(True)
            err.print("talbench: interrupted, cleaning up", markup=False)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await coro
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(guarded())


# ---------------------------------------------------------------------------------------- run


def load_request(args: argparse.Namespace, drivers: dict[str, ProbeDriver]) -> RunRequest:
    """Scenario, selected checks and validated settings.  With --etcd-endpoints the live-etcd
    driver and its checks join the run (``drivers`` is extended in place)."""
    run_id = new_run_id()
    live_checks = _add_live_etcd(args, drivers, run_id)
    path = scenario_files.resolve(args.scenario)
    metrics = metrics_of(drivers)
    settings: dict[str, Any] = {}

    def validate(probe: str, raw: Any) -> None:
        settings[probe] = drivers[probe].settings(raw, quick=args.quick)

    scenario = scenario_files.load(path, metrics, validate)
    if live_checks:
        scenario = dataclasses.replace(scenario, checks=scenario.checks + live_checks)
    checks = select_checks(scenario, (args.only or "").split(","))
    for check in checks:
        if check.probe not in settings:
            try:
                settings[check.probe] = drivers[check.probe].settings({}, quick=args.quick)
            except ScenarioError as exc:
                raise ScenarioError(f"{path}: probe {check.probe!r}: {exc}") from exc
    return RunRequest(run_id, scenario, checks, settings, args.quick, tuple(sys.argv[1:]))


def _add_live_etcd(args: argparse.Namespace, drivers: dict[str, ProbeDriver], run_id: str) -> tuple[Check, ...]:
    live_options = (args.etcd_cacert, args.etcd_cert, args.etcd_key, args.etcd_metrics_urls, args.etcd_profile)
    if not args.etcd_endpoints:
        if any(live_options) or args.allow_live_etcd_writes:
            raise UsageError("the --etcd-* options need --etcd-endpoints")
        return ()
    from talbench.agents.params import ParamError, validate
    from talbench.bench.probes.live_etcd import LiveEtcdDriver, live_checks
    from talbench.bench.probes.live_etcd_settings import LiveEtcdSettings, url_list

    given = {"cacert": args.etcd_cacert, "cert": args.etcd_cert, "key": args.etcd_key, "profile": args.etcd_profile}
    raw = {
        "endpoints": url_list(args.etcd_endpoints),
        "metrics_urls": url_list(args.etcd_metrics_urls),
        "run_id": run_id,
        "allow_writes": args.allow_live_etcd_writes,
        **{name: value for name, value in given.items() if value is not None},
    }
    try:
        config = validate(LiveEtcdSettings, raw)
    except ParamError as exc:
        raise UsageError(f"live etcd: {exc}") from None
    driver = LiveEtcdDriver(config)
    drivers[driver.name] = driver
    return tuple(live_checks(config))


def make_dispatcher(args: argparse.Namespace) -> Any:
    if args.target == "lab":
        from talbench.bench.dispatch.lab import LabDispatcher
        from talbench.bench.lab import lab as labs
        from talbench.bench.lab.topology import make_spec

        spec = make_spec(args.control_planes, args.workers, args.delay)
        root = _lab_root(args)
        existing = labs.find_usable(root)
        if existing is not None and (args.delay or (args.control_planes, args.workers) != (3, 1)):
            raise UsageError(
                f"a lab is already up ({existing.lab_id}); --delay/--control-planes/--workers shape a lab that run "
                "brings up itself: run 'talbench lab down' first, or give them to 'talbench lab up'"
            )
        return LabDispatcher(root, spec)
    try:
        from talbench.bench.dispatch.kube import KubeDispatcher
    except ImportError as exc:
        raise CouldNotRun("the kube target is not available in this build", hint="use --target lab") from exc
    return KubeDispatcher.from_args(args)


def cmd_run(args: argparse.Namespace, err: Console) -> int:
    drivers = default_drivers()
    request = load_request(args, drivers)
    dispatcher = make_dispatcher(args)
    out = Console(highlight=False, soft_wrap=args.format == "json", width=None if sys.stdout.isatty() else 160)
    err.print(
        f"talbench {tool_version()}: run {request.run_id}, scenario {request.scenario.name}, target {args.target}"
        + (" (quick)" if args.quick else ""),
        markup=False,
    )
    if err.is_terminal:
        from talbench.bench.progress import RichProgress

        with RichProgress(err) as progress:
            record = _run_async(run(request, dispatcher, drivers, progress), err)
    else:
        from talbench.bench.progress import LineProgress

        record = _run_async(run(request, dispatcher, drivers, LineProgress(sys.stderr)), err)
    run_dir = write_results(record, args.out)
    code = exit_code(record.verdicts)
    if args.format == "json":
        out.print_json(json.dumps(_summary_document(record, run_dir, code)))
    else:
        table.render(record, out)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(runjson.summary(record).items()))
        out.print(f"{'FAILED' if code else 'PASSED'}: {counts}.  Results: {run_dir / 'run.json'}, {run_dir / 'junit.xml'}")
    if args.target == "kube" and args.keep_results > 0:
        _run_async(dispatcher.keep_summary(record.run_id, _summary_document(record, run_dir, code), keep=args.keep_results), err)
    if args.pushgateway:
        from talbench.bench.report.pushgateway import push

        _run_async(push(args.pushgateway, record.scenario.name, record.run_id, record.verdicts, ended=record.ended), err)
    unavailable = _first_unavailable(record)
    if unavailable is not None:
        err.print(f"talbench: error: a probe could not run on {unavailable.key.node}: {unavailable.error}", markup=False)
        return CouldNotRun.exit_code
    return code


def _summary_document(record: RunRecord, run_dir: Path, code: int) -> dict[str, Any]:
    return {
        "schema": runjson.RUN_SCHEMA,
        "run_id": record.run_id,
        "scenario": record.scenario.name,
        "target": record.target,
        "quick": record.quick,
        "exit_code": code,
        "summary": runjson.summary(record),
        "verdicts": [runjson.verdict_dict(v) for v in record.verdicts],
        "files": {"run": str(run_dir / "run.json"), "junit": str(run_dir / "junit.xml")},
    }


def _first_unavailable(record: RunRecord) -> Measurement | None:
    return next((m for m in record.results if m.error_kind == "unavailable"), None)


def write_results(record: RunRecord, out: Path) -> Path:
    run_dir = out / record.run_id
    try:
        write_atomically(run_dir / "run.json", runjson.dumps(record))
        write_atomically(run_dir / "junit.xml", junit.dumps(record))
    except OSError as exc:
        raise CouldNotRun(f"cannot write results to {run_dir}: {exc.strerror}", hint="check --out") from exc
    return run_dir


# ---------------------------------------------------------------------------------------- lab


def cmd_lab(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.lab import lab as labs
    from talbench.bench.lab.topology import make_spec

    out = Console(highlight=False)
    root = _lab_root(args)
    if args.lab_command == "up":
        spec = make_spec(args.control_planes, args.workers, args.delay)
        state = labs.up(spec, root)  # refuses (UsageError) when a lab is up under root
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


def _print_status(status: Any, out: Console) -> int:
    if status is None:
        return 1
    out.print(status.render() if hasattr(status, "render") else str(status))
    return 0 if getattr(status, "healthy", True) else 1


# ------------------------------------------------------------------------------ kube helpers


def cmd_clean(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.dispatch.kube import KubeDispatcher

    removed = _run_async(KubeDispatcher.from_args(args).clean(run_id=args.run_id), err)
    out = Console(highlight=False)
    out.print("\n".join(f"removed {name}" for name in removed) if removed else "nothing to remove", markup=False)
    return 0


def cmd_manifests(args: argparse.Namespace, err: Console) -> int:
    from talbench.bench.kube.cronjob import manifests
    from talbench.bench.kube.manifests import to_yaml

    docs = manifests(
        cronjob=args.cronjob, schedule=args.schedule, image=args.image, namespace=args.namespace,
        scenario=args.scenario, keep=args.keep, pushgateway=args.pushgateway,
    )
    sys.stdout.write(to_yaml(docs))
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
