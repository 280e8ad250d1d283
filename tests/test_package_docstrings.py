"""A package's docstring either lists every module of its package or says nothing about them: a
list that names some modules reads as complete and misleads when it is not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for folder in ("bench", "agents") for p in (ROOT / folder).rglob("__init__.py"))
# a listed module: an indented line starting with its name (a package's with a trailing /), then
# at least two spaces and what it is
LISTED = re.compile(r"^ {2,}([A-Za-z_][A-Za-z0-9_]*)/? {2,}\S", re.MULTILINE)


def contents(package: Path) -> set[str]:
    modules = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    return modules | {p.parent.name for p in package.glob("*/__init__.py")}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_package_docstring_lists_all_of_its_modules_or_none(package: Path):
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    present = contents(package)
    listed = {name for name in LISTED.findall(docstring) if name in present}
    if listed:
        assert listed == present, f"{package.relative_to(ROOT)}/__init__.py does not list {sorted(present - listed)}"
