"""The layering contract (as kopf keeps one): imports point one way only.

- talbench.agents never imports talbench.bench (the agent knows nothing of the coordinator);
- only bench/kube and bench/dispatch/kube.py may import a Kubernetes client;
- the judge, plan, stats, units and model import no I/O layer (dispatch, lab, report, cli, aiohttp);
- nothing but the CLI (and the agent's own entry point) prints or exits.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.joinpath("bench").rglob("*.py"), *ROOT.joinpath("agents").rglob("*.py")])
PURE = {"bench/judge.py", "bench/plan.py", "bench/stats.py", "bench/units.py", "bench/model.py", "bench/scenario.py"}
KUBE_CLIENTS = ("kubernetes", "kubernetes_asyncio", "kr8s", "lightkube")
ENTRY_POINTS = {"bench/cli.py", "agents/main.py", "agents/__main__.py", "agents/etcdload/worker.py"}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", [p for p in SOURCES if rel(p).startswith("agents/")], ids=rel)
def test_agents_import_nothing_from_the_coordinator(path):
    assert not {n for n in imports(path) if n.startswith("talbench.bench")}


@pytest.mark.parametrize("path", SOURCES, ids=rel)
def test_only_the_kube_dispatcher_talks_to_kubernetes(path):
    if rel(path).startswith("bench/kube/") or rel(path) == "bench/dispatch/kube.py":
        return
    assert not {n for n in imports(path) if n.split(".")[0] in KUBE_CLIENTS}


@pytest.mark.parametrize("path", [ROOT / p for p in sorted(PURE) if (ROOT / p).exists()], ids=rel)
def test_pure_layers_import_no_io_layer(path):
    forbidden = ("talbench.bench.dispatch", "talbench.bench.lab", "talbench.bench.report", "talbench.bench.cli", "aiohttp")
    # scenario.py reads its file; the probes.base import is for the Metric record only
    assert not {n for n in imports(path) if n.startswith(forbidden)}


@pytest.mark.parametrize("path", [p for p in SOURCES if rel(p) not in ENTRY_POINTS and not rel(p).startswith("bench/lab/delayline")], ids=rel)
def test_library_code_neither_prints_nor_exits(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else f"{getattr(func.value, 'id', '')}.{func.attr}" if isinstance(func, ast.Attribute) else ""
            assert name not in ("print", "sys.exit", "exit", "os._exit"), f"{rel(path)}:{node.lineno} calls {name}"
