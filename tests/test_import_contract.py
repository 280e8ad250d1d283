"""The layering contract: imports point one way only, checked by import-linter on the whole graph.

The contracts live in .importlinter (the agent imports nothing of the coordinator; talbench
never imports its test bed (testbed/); the pure layers do no I/O, even indirectly; the coordinator's and the agent's layers; only bench.kube talks to
the Kubernetes API; only the terminal layer imports rich).  The tests below run `lint-imports`
on this checkout, then on a copy of the package with one deliberate upward import added, and
check that the copy is refused with the offending chain named.  A last test keeps library code
from printing or exiting (only the entry points do).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SOURCES = sorted([*ROOT.joinpath("bench").rglob("*.py"), *ROOT.joinpath("agents").rglob("*.py")])
# Programs, not library code: they may print and exit.  agents/build/ holds the image build's
# helper scripts (run by build-image.sh, never imported by talbench).
ENTRY_POINTS = {
    "bench/cli/__main__.py",
    "agents/main.py",
    "agents/__main__.py",
    "agents/probes/etcd/worker.py",
    "agents/build/oci_index.py",
}


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree at `root` (its .importlinter, its talbench/ package first)."""
    argv = [str(LINT_IMPORTS), "--no-cache", *(arg for c in contracts for arg in ("--contract", c))]
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.processes
def test_the_checkout_keeps_every_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package as a checkout lays it out: talbench/{bench,agents}, testbed/ and .importlinter."""
    for folder in ("bench", "agents"):
        shutil.copytree(ROOT / folder, tmp_path / "talbench" / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "testbed", tmp_path / "testbed", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


@pytest.mark.processes
def test_a_copy_keeps_every_contract(tree: Path):
    """The copy the breaches are made in is faithful: unchanged, it keeps every contract."""
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr


# (contract id, {file: line appended to it (a new file if it does not exist)}, links the report must name)
BREACHES = [
    pytest.param(
        "pure-layers",
        {"bench/judge.py": "from talbench.bench import helper", "bench/helper.py": "import aiohttp"},
        ["talbench.bench.judge -> talbench.bench.helper", "talbench.bench.helper -> aiohttp"],
        id="judge-reaches-aiohttp-through-a-helper",
    ),
    pytest.param(
        "talbench-never-imports-testbed",
        {"bench/lab/status.py": "from testbed.kubelab import addon"},
        ["talbench.bench.lab.status -> testbed.kubelab.addon"],
        id="the-lab-imports-the-test-bed",
    ),
    pytest.param(
        "talbench-never-imports-testbed",
        {"agents/app.py": "import testbed.image.runner"},
        ["talbench.agents.app -> testbed.image.runner"],
        id="the-agent-imports-the-test-bed",
    ),
    pytest.param(
        "pure-layers",
        {"agents/params.py": "import asyncio"},
        ["talbench.agents.params -> asyncio"],
        id="params-imports-asyncio",
    ),
    pytest.param(
        "agent-knows-no-coordinator",
        {"agents/wire.py": "from talbench.bench.model import Node"},
        ["talbench.agents.wire -> talbench.bench.model"],
        id="agent-imports-the-coordinator",
    ),
    pytest.param(
        "coordinator-layers",
        {"bench/model.py": "from talbench.bench import judge"},
        ["talbench.bench.model -> talbench.bench.judge"],
        id="model-imports-judge",
    ),
    pytest.param(
        "compare-layers",
        {"bench/compare/stats.py": "from talbench.bench.compare import changes"},
        ["talbench.bench.compare.stats -> talbench.bench.compare.changes"],
        id="compare-stats-imports-the-changes",
    ),
    pytest.param(
        "agent-layers",
        {"agents/probe.py": "from talbench.agents import jobs"},
        ["talbench.agents.probe -> talbench.agents.jobs"],
        id="probe-protocol-imports-the-job-runner",
    ),
    pytest.param(
        "only-kube-talks-to-kubernetes",
        {"bench/execute.py": "from talbench.bench.kube import client"},
        ["talbench.bench.execute -> talbench.bench.kube.client"],
        id="executor-imports-the-api-client",
    ),
    pytest.param(
        "rich-only-in-the-terminal-layer",
        {"bench/report/runjson/write.py": "from rich.console import Console"},
        ["talbench.bench.report.runjson.write -> rich"],
        id="report-writer-imports-rich",
    ),
]


@pytest.mark.processes
@pytest.mark.parametrize(("contract", "additions", "chain"), BREACHES)
def test_an_upward_import_breaks_its_contract(tree: Path, contract: str, additions: dict[str, str], chain: list[str]):
    for module, statement in additions.items():
        path = tree / "talbench" / module
        path.write_text(f"{path.read_text() if path.exists() else ''}\n{statement}\n")

    done = lint_imports(tree, contract)

    assert done.returncode != 0
    assert "BROKEN" in done.stdout
    report = " ".join(done.stdout.split())
    for link in chain:
        assert link in report, done.stdout


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if rel(p) not in ENTRY_POINTS and not rel(p).startswith("bench/lab/delayline")], ids=rel
)
def test_library_code_neither_prints_nor_exits(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else f"{getattr(func.value, 'id', '')}.{func.attr}"
                if isinstance(func, ast.Attribute)
                else ""
            )
            assert name not in ("print", "sys.exit", "exit", "os._exit"), f"{rel(path)}:{node.lineno} calls {name}"
