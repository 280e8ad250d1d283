"""Shared fixtures and skip helpers.

- ``@pytest.mark.root`` (optionally ``@pytest.mark.root("ping", "fio")``): the test is skipped
  cleanly unless it runs as root and every named tool is installed.
- ``requires_root(*tools)``: the same as a list of marks, for ``pytestmark = requires_root("ip")``.
- ``lab`` (module scope): a real lab of 3 control planes and 1 worker with a running agent on
  every node, under its own temporary root and lab id; always removed afterwards.
- ``make_lab`` (function scope): ``make_lab(LabSpec(...), start_agents=True) -> LabState``; every
  lab it made is removed at the end of the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from talbench.bench.lab.state import LabState
from talbench.bench.lab.topology import LabSpec


def root_skip_reason(*tools: str) -> str | None:
    """Why a root test cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, cgroups)"
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return f"needs {', '.join(missing)}" if missing else None


def requires_root(*tools: str) -> list[pytest.MarkDecorator]:
    reason = root_skip_reason(*tools)
    return [pytest.mark.root, pytest.mark.skipif(reason is not None, reason=reason or "")]


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("root")
    if marker is not None:
        reason = root_skip_reason(*(str(tool) for tool in marker.args))
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    from tests.bench.lab.helpers import running_lab

    with running_lab(LabSpec(control_planes=3, workers=1)) as state:
        yield state


@pytest.fixture
def make_lab() -> Iterator[Callable[..., LabState]]:
    from contextlib import ExitStack

    from tests.bench.lab.helpers import running_lab

    with ExitStack() as stack:

        def make(spec: LabSpec | None = None, *, start_agents: bool = True) -> LabState:
            return stack.enter_context(running_lab(spec or LabSpec(), start_agents=start_agents))

        yield make
