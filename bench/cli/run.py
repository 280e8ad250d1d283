"""`talbench run`: load the scenario and its settings (live etcd joins on request), pick the
dispatcher, run with a progress display, write run.json, junit.xml and report.html, show the verdicts (table or
JSON), keep a summary in the cluster and push to a Pushgateway when asked.  Part of the CLI
(bench/cli/__init__.py maps what it raises to exit codes)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from talbench.agents.params import Params
from talbench.bench import scenario as scenario_files
from talbench.bench.cli.shared import lab_root, run_async
from talbench.bench.dispatch.base import Dispatcher, KeepsSummaries, LeftBehind
from talbench.bench.errors import CouldNotRun, ScenarioError, UsageError
from talbench.bench.model import Check, Measurement, RunRecord
from talbench.bench.plan import make_plan, select_checks
from talbench.bench.probes import default_drivers
from talbench.bench.probes.base import ProbeDriver
from talbench.bench.probes.etcd_live.metrics import PROBE as LIVE_ETCD
from talbench.bench.report import dry_run as dry_run_report
from talbench.bench.report import junit, table
from talbench.bench.report.files import write_atomically
from talbench.bench.report.history import History, since
from talbench.bench.report.html import page
from talbench.bench.report.runjson import write
from talbench.bench.run import RunRequest, exit_code, metrics_of, new_run_id, pair_budgets, run, tool_version

if TYPE_CHECKING:
    from talbench.bench.lab.state import LabState


def load_request(args: argparse.Namespace, drivers: dict[str, ProbeDriver[Params]]) -> RunRequest:
    """Scenario, selected checks and validated settings.  With --etcd-endpoints the live-etcd
    probe's settings (from its options) and checks join the run."""
    run_id = new_run_id()
    live_settings, live_checks = _live_etcd(args, drivers, run_id)
    path = scenario_files.resolve(args.scenario)
    metrics = metrics_of(drivers)
    settings: dict[str, Params] = {}

    def validate(probe: str, raw: Any) -> None:
        settings[probe] = drivers[probe].settings(raw, quick=args.quick)

    scenario = scenario_files.load(path, metrics, validate)
    if live_settings is not None:
        settings[LIVE_ETCD] = live_settings
        scenario = dataclasses.replace(scenario, checks=scenario.checks + live_checks)
    checks = select_checks(scenario, (args.only or "").split(","))
    for check in checks:
        if check.probe not in settings:
            try:
                settings[check.probe] = drivers[check.probe].settings({}, quick=args.quick)
            except ScenarioError as exc:
                raise ScenarioError(f"{path}: probe {check.probe!r}: {exc}") from exc
    return RunRequest(run_id, scenario, checks, settings, args.quick, tuple(sys.argv[1:]))


def _live_etcd(
    args: argparse.Namespace, drivers: dict[str, ProbeDriver[Params]], run_id: str
) -> tuple[Params | None, tuple[Check, ...]]:
    """The live-etcd probe's settings block from its options, validated by its driver, and the
    checks those settings can measure; (None, ()) without --etcd-endpoints."""
    live_options = (args.etcd_cacert, args.etcd_cert, args.etcd_key, args.etcd_metrics_urls, args.etcd_profile)
    if not args.etcd_endpoints:
        if any(live_options) or args.allow_live_etcd_writes:
            raise UsageError("the --etcd-* options need --etcd-endpoints")
        return None, ()
    from talbench.bench.probes.etcd_live.driver import live_checks
    from talbench.bench.probes.etcd_live.settings import LiveEtcdSettings, url_list

    given = {"cacert": args.etcd_cacert, "cert": args.etcd_cert, "key": args.etcd_key, "profile": args.etcd_profile}
    raw = {
        "endpoints": url_list(args.etcd_endpoints),
        "metrics_urls": url_list(args.etcd_metrics_urls),
        "run_id": run_id,
        "allow_writes": args.allow_live_etcd_writes,
        **{name: value for name, value in given.items() if value is not None},
    }
    try:
        settings = drivers[LIVE_ETCD].settings(raw, quick=args.quick)
    except ScenarioError as exc:
        raise UsageError(f"live etcd: {exc}") from None
    if not isinstance(settings, LiveEtcdSettings):  # the registry's driver of LIVE_ETCD declares these
        raise TypeError(f"probe {LIVE_ETCD!r} made {type(settings).__name__}, not LiveEtcdSettings")
    return settings, live_checks(settings)


def make_dispatcher(args: argparse.Namespace) -> Dispatcher:
    """The dispatcher of ``--target``, built from the command line (its options checked here)."""
    if args.target == "lab":
        from talbench.bench.dispatch.lab import LabDispatcher
        from talbench.bench.lab import lab as labs
        from talbench.bench.lab.topology import DRY_RUN_MAX_WORKERS, MAX_WORKERS, make_spec

        dry = args.dry_run  # a plan of any size builds nothing
        spec = make_spec(
            args.control_planes, args.workers, args.delay, max_workers=DRY_RUN_MAX_WORKERS if dry else MAX_WORKERS
        )
        root = lab_root(args)
        existing = labs.find_usable(root)
        if args.image and (existing is None or not _runs_image(existing, Path(args.image).resolve())):
            raise UsageError(
                "--image with --target lab: the lab's agents run from an image only in a lab the test bed "
                "brought up (python -m testbed.kubelab up --image ARCHIVE, from a checkout), which run uses",
            )
        if existing is not None and (args.delay or (args.control_planes, args.workers) != (3, 1)):
            raise UsageError(
                f"a lab is already up ({existing.lab_id}); --delay/--control-planes/--workers shape a lab that "
                "run brings up itself: run 'talbench lab down' first, or give them to 'talbench lab up'"
            )
        return LabDispatcher(root, spec)
    try:
        from talbench.bench.cli.options import kube_options
        from talbench.bench.dispatch.kube import KubeDispatcher
    except ImportError as exc:
        raise CouldNotRun("the kube target is not available in this build", hint="use --target lab") from exc
    dispatcher = KubeDispatcher(kube_options(args))
    dispatcher.image()  # --image checked before touching the cluster
    return dispatcher


def _runs_image(state: LabState, archive: Path) -> bool:
    """Whether the lab that is up runs its agents from ``archive`` (the test bed's ``up --image``)."""
    return state.launcher is not None and Path(str(state.launcher.get("archive"))) == archive


def cmd_run(args: argparse.Namespace, err: Console) -> int:
    drivers = default_drivers()
    request = load_request(args, drivers)
    if args.dry_run:
        return dry_run(args, request, drivers, err)
    dispatcher = make_dispatcher(args)
    written: list[Path] = []  # the results are written before the teardown (run()'s ``finished``)

    def finished(record: RunRecord) -> None:
        written.append(write_results(record, args.out))

    out = Console(highlight=False, soft_wrap=args.format == "json", width=None if sys.stdout.isatty() else 160)
    err.print(
        f"talbench {tool_version()}: run {request.run_id}, scenario {request.scenario.name}, target {args.target}"
        + (" (quick)" if args.quick else ""),
        markup=False,
    )
    left: LeftBehind | None = None  # a teardown that could not finish: reported after the results
    try:
        if err.is_terminal:
            from talbench.bench.progress import RichProgress

            with RichProgress(err) as progress:
                record = run_async(run(request, dispatcher, drivers, progress, finished=finished), err)
        else:
            from talbench.bench.progress import LineProgress

            record = run_async(run(request, dispatcher, drivers, LineProgress(sys.stderr), finished=finished), err)
    except LeftBehind as exc:
        if exc.record is None:
            raise
        record, left = exc.record, exc
    run_dir = written[-1] if written else write_results(record, args.out)
    code = exit_code(record.verdicts)  # a regression since the previous run alone fails no check
    keeper = dispatcher if isinstance(dispatcher, KeepsSummaries) and args.keep_results > 0 else None
    history = _history(keeper, record, drivers, err) if keeper is not None else None
    summary = _summary_document(record, run_dir, code, history)
    if args.format == "json":
        print_json(out, summary)
    else:
        table.render(record, out)
        for line in history.lines() if history else ():
            out.print(line, markup=False)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(write.summary(record).items()))
        out.print(
            f"{'FAILED' if code else 'PASSED'}: {counts}.  Results: {run_dir / 'run.json'}, {run_dir / 'junit.xml'}, "
            f"{run_dir / page.REPORT_FILE}"
        )
    if keeper is not None:
        run_async(keeper.keep_summary(record.run_id, summary, keep=args.keep_results), err)
    if args.pushgateway:
        from talbench.bench.report.pushgateway import push

        run_async(push(args.pushgateway, record, cluster=args.cluster, history=history), err)
    unavailable = _first_unavailable(record)
    if unavailable is not None:
        err.print(
            f"talbench: error: a probe could not run on {unavailable.key.node}: {unavailable.error}", markup=False
        )
    if left is not None:
        err.print(f"talbench: error: the results are written; {left}", markup=False)
    return CouldNotRun.exit_code if unavailable is not None or left is not None else code


def dry_run(
    args: argparse.Namespace, request: RunRequest, drivers: dict[str, ProbeDriver[Params]], err: Console
) -> int:
    """The plan on the nodes the run would find; nothing deployed, nothing measured."""
    dispatcher: Dispatcher
    if args.target == "kube":
        from talbench.bench.cli.options import kube_options
        from talbench.bench.dispatch.kube import KubeDispatcher

        dispatcher = KubeDispatcher(kube_options(args))  # no --image needed: nothing is deployed
    else:
        dispatcher = make_dispatcher(args)
    nodes = run_async(dispatcher.discover(), err)
    if not nodes:
        raise CouldNotRun("no nodes found to plan for", hint="check the target (lab up? kubeconfig context?)")
    metrics = metrics_of(drivers)
    plan = make_plan(request.checks, nodes, metrics, pair_budgets(drivers, request.settings), target=args.target)
    costs = {
        probe: drivers[probe].estimate(plan.keys_of(probe), request.settings[probe], nodes) for probe in plan.probes
    }
    doc = dry_run_report.plan_document(request.scenario.name, args.target, nodes, plan, costs)
    out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    if args.format == "json":
        print_json(out, doc)
    else:
        for line in dry_run_report.plan_lines(doc):
            out.print(line, markup=False)
    return 0


def _history(
    dispatcher: KeepsSummaries, record: RunRecord, drivers: dict[str, ProbeDriver[Params]], err: Console
) -> History:
    """CronJob mode: this run against the previous one of its scenario kept in the cluster, read
    before this run keeps its own (bench/report/history.py).  A failure to read is one line."""
    try:
        kept = run_async(dispatcher.kept_summaries(), err)
    except CouldNotRun as exc:
        return History(f"not compared with the previous run: {exc}")
    directions = {metric: known.lower_is_better for metric, known in metrics_of(drivers).items()}
    return since(kept, record, directions)


def _summary_document(record: RunRecord, run_dir: Path, code: int, history: History | None = None) -> dict[str, Any]:
    return {
        "schema": write.RUN_SCHEMA,
        "run_id": record.run_id,
        "scenario": record.scenario.name,
        "target": record.target,
        "quick": record.quick,
        "exit_code": code,
        "summary": write.summary(record),
        "verdicts": [write.verdict_dict(v) for v in record.verdicts],
        "files": {
            "run": str(run_dir / "run.json"),
            "junit": str(run_dir / "junit.xml"),
            "report": str(run_dir / page.REPORT_FILE),
        },
        **(history.document() if history is not None else {}),
    }


def _first_unavailable(record: RunRecord) -> Measurement | None:
    return next((m for m in record.results if m.error_kind == "unavailable"), None)


def write_results(record: RunRecord, out: Path) -> Path:
    run_dir = out / record.run_id
    try:
        write_atomically(run_dir / "run.json", write.dumps(record))
        write_atomically(run_dir / "junit.xml", junit.dumps(record))
        write_atomically(run_dir / page.REPORT_FILE, page.render(record))
    except OSError as exc:
        raise CouldNotRun(f"cannot write results to {run_dir}: {exc.strerror}", hint="check --out") from exc
    return run_dir


def print_json(out: Console, document: Any) -> None:
    """``document`` as indented JSON on the console's file, unstyled: rich's print_json
    highlights it token by token, at a cost in memory and CPU out of all proportion to a large
    summary (docs/measurements.md, "Scale")."""
    out.file.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
