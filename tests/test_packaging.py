"""Every package folder is installed under the single import package `talbench`."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    listed = set(config["packages"])
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((name, *relative)) in listed, f"{init.parent} is not in pyproject packages"


def test_agents_cannot_be_shadowed_by_the_pypi_package_named_agents():
    import talbench.agents

    assert Path(talbench.agents.__file__).resolve().parent == ROOT / "agents"


def test_the_checkout_resolves_talbench_names_for_type_checkers_and_editors():
    """talbench/ is a namespace package of relative symlinks onto the mapped folders (docs/development.md,
    "The checkout"): mypy, pyright and editors do not run the editable install's hook."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert not (ROOT / "talbench" / "__init__.py").exists()
    for name, folder in mapping.items():
        link = ROOT.joinpath(*name.split("."))
        assert link.is_symlink(), f"{link} is not a symlink"
        assert not Path(link.readlink()).is_absolute(), f"{link} must be a relative symlink"
        assert link.resolve() == (ROOT / folder).resolve()
