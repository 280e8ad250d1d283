"""Benchmark: the coordinator at 10, 100 and 1,000 nodes, through a real control plane.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scale_kube.py [--sizes 10,100,1000] [--only PROBES]
                                                          [--quick] [--run-timeout S]

Per size, ``talbench run --target kube --scenario control-plane --only rtt,mtu,node,fsync,topology``
as a user runs it (the CLI, the admin kubeconfig, through the lab's forwarder) against a real
kube-apiserver, DaemonSet controller, scheduler and the API server's pod proxy; only the kubelets
and the agents are simulated (testbed/kubesim: one process, N Node objects, the real
agent application with synthetic results).  Reported per size: wall time, the coordinator's CPU
seconds and peak RSS (its own process, sampled: bench_scale.measured_cli), the API requests of
the run (the API server's own ``apiserver_request_total`` before and after, by verb and resource;
and from the API server's audit log the coordinator's own, user ``admin``, by endpoint), run.json's
size, the per-node probe budget (``--dry-run``) and the verdicts.  Also prints ``--dry-run`` for
the largest size (the plan for 1,000 simulated nodes).  Writes results/bench/scale_kube.json.
Needs root (the lab's namespace) and ``make kubernetes``.

Not simulated, hence left out with --only: etcd, wireguard (their agent jobs' results are
intricate; both are bounded to the control planes in the plan anyway).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
from bench_output import write_record
from bench_scale import CLI, measured_cli
from prometheus_client.parser import text_string_to_metric_families

from talbench.bench.lab import lab, processes, teardown
from talbench.bench.lab.netns import Ip, require_root
from talbench.bench.lab.topology import LabSpec

# testbed/ is not installed (not in the wheel): imported from the checkout this script is in
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "testbed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))
from testbed.kubesim import control_plane  # noqa: E402
from testbed.kubesim.control_plane import ControlPlane  # noqa: E402

IMAGE = "registry.invalid/talbench/agent:simulated"  # never pulled: the kubelets are simulated
DEFAULT_ONLY = "rtt,mtu,node,fsync,topology"
COORDINATOR_USER = "admin"
SIMULATOR_USER = "kube-apiserver-kubelet-client"
PROBES_IN_RUN = ("rtt", "mtu", "node", "fsync")  # those that talk to agents (topology reads the API)


def load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# ---- the API server's own counters --------------------------------------------------------------


def scrape(plane: ControlPlane) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by (verb, resource[/subresource]), read with the admin
    kubeconfig's client certificate through the forwarder."""
    context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
    context.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
    with urllib.request.urlopen(plane.kube.server + "/metrics", context=context, timeout=30) as answer:
        text = answer.read().decode()
    out: dict[tuple[str, str], float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            out[(labels.get("verb", ""), resource or "(non-resource)")] += sample.value
    return out


def difference(before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float]) -> dict[str, int]:
    diff = {f"{verb} {resource}": int(after[key] - before.get(key, 0.0)) for key in after for verb, resource in [key]}
    return dict(sorted(((k, v) for k, v in diff.items() if v > 0), key=lambda kv: -kv[1]))


def by_user(events: Iterable[Mapping[str, Any]]) -> dict[str, collections.Counter[str]]:
    """Audit events (one per finished request) counted per user and (verb, resource); the
    coordinator's pod-proxy requests also by agent endpoint."""
    users: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for event in events:
        user = (event.get("user") or {}).get("username", "?")
        uri = event.get("requestURI", "")
        if user == COORDINATOR_USER and uri.startswith("/metrics"):
            continue  # this benchmark's own scrape
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = f"{event.get('verb', '?')} {resource or uri.split('?')[0]}"
        if ref.get("subresource") == "proxy":
            endpoint = uri.split("/proxy", 1)[1].split("?")[0]
            parts = endpoint.strip("/").split("/")
            endpoint = "/".join(parts[:2]) + ("/{id}" if len(parts) > 2 else "")
            key = f"{event.get('verb', '?')} pods/proxy {endpoint}"
        users[user][key] += 1
    return users


# ---- the coordinator ----------------------------------------------------------------------------


def watchdog(marker: str, limit: float, finished: threading.Event) -> threading.Thread:
    """Interrupt (then kill) this process's child CLI whose command line holds ``marker`` once
    ``limit`` seconds have passed: measured_cli itself waits without a bound."""

    def run() -> None:
        if finished.wait(limit):
            return
        for signum, grace in ((signal.SIGINT, 120.0), (signal.SIGKILL, 0.0)):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    if marker in " ".join(child.cmdline()):
                        print(f"!! run over {limit:g}s: sending signal {signum} to {child.pid}", flush=True)
                        child.send_signal(signum)
            if finished.wait(grace):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def kube_argv(plane: ControlPlane, only: str, quick: bool) -> list[str]:
    argv = ["run", "--target", "kube", "--scenario", "control-plane", "--kubeconfig", str(plane.kube.kubeconfig)]
    return argv + ["--only", only] + (["--quick"] if quick else [])


def dry_run(plane: ControlPlane, only: str, quick: bool, fmt: str) -> str:
    argv = [*CLI, *kube_argv(plane, only, quick), "--image", IMAGE, "--dry-run", "--format", fmt]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"--dry-run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def budget(plan: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"expected_duration_s": plan.get("expected_duration_s")}
    for probe in plan.get("probes") or ():
        entry = {"results": probe.get("results")}
        for key in ("streams_per_node", "packets_per_s_per_node"):
            if isinstance(probe.get(key), dict):
                entry[f"{key}_max"] = probe[key].get("max")
        out[probe["probe"]] = entry
    return out


# ---- one size -----------------------------------------------------------------------------------


def start_simulator(
    root: Path, plane: ControlPlane, nodes: int, timeout: float
) -> tuple[int, str, Path, dict[str, Any]]:
    sim_id = f"s{nodes}-{secrets.token_hex(2)}"
    data_dir = root / sim_id
    data_dir.mkdir()
    ready = root / f"{sim_id}.ready"
    argv = [sys.executable, "-m", "testbed.kubesim.simulator", "--netns", plane.netns_path]
    argv += ["--kubeconfig", str(plane.sim_kubeconfig), "--sim-id", sim_id, "--nodes", str(nodes)]
    argv += ["--data-dir", str(data_dir), "--ready-file", str(ready), "--schedulable-timeout", str(timeout)]
    # the caller's PYTHONPATH stays after the simulator's own (a checkout that is not the installed one)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    log = root / f"{sim_id}.log"
    pid = processes.spawn(argv, log, env=env)
    deadline = time.monotonic() + timeout + 60
    while not ready.exists():
        if not processes.alive(pid):
            processes.reap(pid)
            raise SystemExit(f"simulator exited: {processes.log_tail(log, 10)}")
        control_plane.alive(plane)
        if time.monotonic() > deadline:
            stop_simulator(pid, ready)
            raise SystemExit(f"simulator not ready within {timeout + 60:g}s: {processes.log_tail(log, 5)}")
        time.sleep(0.5)
    print(f"   simulator {sim_id} (pid {pid}): {ready.read_text()}", flush=True)
    return pid, sim_id, ready, json.loads(ready.read_text())


def stop_simulator(pid: int, ready: Path, timeout: float = 180.0) -> dict[str, Any]:
    """SIGTERM, wait (it stops its agents and deletes its Nodes), SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    processes.terminate([pid], term_timeout=timeout)
    processes.reap(pid)
    done = Path(str(ready) + ".done")
    return json.loads(done.read_text()) if done.exists() else {}


def one_size(
    root: Path,
    plane: ControlPlane,
    nodes: int,
    only: str,
    quick: bool,
    run_timeout: float,
    show_plan: bool,
    keep: Path | None = None,
) -> dict[str, Any]:
    print(f"== {nodes} simulated nodes", flush=True)
    started = time.monotonic()
    pid, sim_id, ready, sim_setup = start_simulator(root, plane, nodes, timeout=900.0)
    try:
        plan = json.loads(dry_run(plane, only, quick, "json"))
        if show_plan:
            print(f"--- talbench run --dry-run, {nodes} simulated nodes:")
            print(dry_run(plane, only, quick, "table"), flush=True)
        out = root / f"out-{sim_id}"
        load_before = load()
        metrics_before = scrape(plane)
        _, offset = control_plane.audit_lines(plane.audit_log, 0)
        finished = threading.Event()
        watchdog(str(out), run_timeout, finished)
        try:
            argv = [*kube_argv(plane, only, quick), "--image", IMAGE, "--out", str(out), "--format", "json"]
            usage = measured_cli(argv)
        finally:
            finished.set()
        metrics_after = scrape(plane)
        load_after = load()
        events, _ = control_plane.audit_lines(plane.audit_log, offset)
        users = by_user(events)
    finally:
        sim_counts = stop_simulator(pid, ready)
    runs = list(out.glob("*/run.json"))
    doc = json.loads(runs[0].read_text()) if runs else {}
    verdicts: dict[str, int] = collections.Counter(v["status"] for v in doc.get("verdicts") or ())
    api = difference(metrics_before, metrics_after)
    coordinator = users.get(COORDINATOR_USER, collections.Counter())
    proxy = sum(v for k, v in coordinator.items() if " pods/proxy " in k)
    agents = nodes  # one agent per node (every node takes the DaemonSet's pod)
    row = {
        "nodes": nodes,
        "exit_code": usage["rc"],
        "wall_s": round(usage["wall_s"], 1),
        "coordinator_cpu_s": round(usage["cpu_s"], 1),
        "coordinator_cores_avg": round(usage["cpu_s"] / usage["wall_s"], 2) if usage["wall_s"] else None,
        "coordinator_peak_rss_mb": round(usage["max_rss_mb"], 1),
        "run_json_mb": round(runs[0].stat().st_size / 1e6, 2) if runs else None,
        "agents_ready_after_s": ((doc.get("metadata") or {}).get("kube") or {}).get("agents_ready_after_s"),
        "api_requests_total": sum(api.values()),
        "api_requests_top": dict(list(api.items())[:12]),
        "coordinator_requests": sum(coordinator.values()),
        "coordinator_requests_by_endpoint": dict(coordinator.most_common(15)),
        "coordinator_proxy_requests": proxy,
        "coordinator_proxy_requests_per_node_per_probe": round(proxy / agents / len(PROBES_IN_RUN), 2),
        "requests_by_user": {user: sum(c.values()) for user, c in sorted(users.items())},
        "simulator": {**sim_setup, **sim_counts},
        "budget": budget(plan),
        "verdicts": dict(verdicts),
        "not_judged_why": dict(
            collections.Counter(
                f"{v['check']}: {_reason(str(v.get('message') or ''))}"
                for v in doc.get("verdicts") or ()
                if v["status"] in ("no_data", "invalid")
            ).most_common(8)
        ),
        "load_before": load_before,
        "load_after": load_after,
        "setup_and_teardown_s": None,
        "stderr_tail": usage["stderr"][-1500:],
    }
    row["setup_and_teardown_s"] = round(time.monotonic() - started - usage["wall_s"], 1)
    if keep is not None and runs:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copytree(runs[0].parent, keep / f"{nodes}-nodes", dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def _reason(message: str) -> str:
    """A no_data or invalid verdict's reason without the node names (so that they count up)."""
    if "not reachable" in message:
        return "agent unready: pod ready, agent not reachable through the pod proxy (health: no answer within 15s)"
    if "no answer within" in message:
        return "agent job: no answer within " + message.rsplit("no answer within", 1)[1][:20]
    return message.split(": ", 1)[-1][:100]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'nodes':>5} {'exit':>4} {'wall s':>7} {'cpu s':>6} {'cores':>5} {'RSS MB':>6} {'run.json MB':>11} "
        f"{'API req':>7} {'coord req':>9} {'proxy/node/probe':>16} {'rtt streams/node':>16} {'load 1m':>7}  verdicts"
    )
    print(head)
    for r in rows:
        rtt = (r["budget"].get("rtt") or {}).get("streams_per_node_max", "-")
        print(
            f"{r['nodes']:>5} {r['exit_code']:>4} {r['wall_s']:>7} {r['coordinator_cpu_s']:>6} "
            f"{r['coordinator_cores_avg']!s:>5} {r['coordinator_peak_rss_mb']:>6} {r['run_json_mb']!s:>11} "
            f"{r['api_requests_total']:>7} {r['coordinator_requests']:>9} "
            f"{r['coordinator_proxy_requests_per_node_per_probe']:>16} {rtt!s:>16} "
            f"{r['load_before'][0]:.1f}-{r['load_after'][0]:.1f}  {r['verdicts']}"
        )
    for r in rows:
        print(
            f"-- {r['nodes']} nodes: API requests by verb and resource (apiserver_request_total): {r['api_requests_top']}"
        )
        print(f"   coordinator's (audit, user admin): {r['coordinator_requests_by_endpoint']}")
        print(f"   by user: {r['requests_by_user']}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000", help="simulated node counts (each at least 3)")
    parser.add_argument("--only", default=DEFAULT_ONLY, help="probes or checks (the simulated ones)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="seconds before a run is interrupted")
    parser.add_argument("--out", type=Path, default=Path("results/bench/scale_kube.json"))
    parser.add_argument("--keep-runs", type=Path, default=None, metavar="DIR", help="keep each run's results in DIR")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    require_root("run the scale benchmark")
    ip = Ip.locate()
    root = Path(tempfile.mkdtemp(prefix="tbsk-", dir="/var/tmp"))
    state = None
    rows: list[dict[str, Any]] = []
    try:
        state = lab.up(LabSpec(control_planes=1, workers=0), root, persistent=False, start_agents=False)
        print(f"lab {state.lab_id}: starting the control plane", flush=True)
        plane = control_plane.start(ip, state)
        control_plane.add_addresses(ip, plane.kube.namespace, max(sizes))
        for n in sizes:
            rows.append(
                one_size(root, plane, n, args.only, args.quick, args.run_timeout, n == max(sizes), args.keep_runs)
            )
            print_table(rows[-1:])
    finally:
        if state is not None:
            teardown.remove_lab(ip, state.lab_id, state.lab_dir, term_timeout=5.0)
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    write_record(
        args.out,
        "talbench/bench-scale-kube/v1",
        {"cpus": os.cpu_count(), "only": args.only, "quick": args.quick, "runs": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
