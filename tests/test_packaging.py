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
