"""Shared fixtures, skip helpers and the check tier.

- ``@pytest.mark.root`` (optionally ``@pytest.mark.root("ping", "fio")``): the test is skipped
  cleanly unless it runs as root and every named tool is installed.
- ``requires_root(*tools)``: the same as a list of marks, for ``pytestmark = requires_root("ip")``.
- ``lab`` (module scope): a real lab of 3 control planes and 1 worker with a running agent on
  every node, under its own temporary root and lab id; always removed afterwards.
- ``make_lab`` (function scope): ``make_lab(LabSpec(...), start_agents=True) -> LabState``; every
  lab it made is removed at the end of the test.
- ``--check-tier`` (``make check``): runs only the tests with none of the marks ``root``, ``lab``
  or ``processes``, and fails any of them that starts a process or opens a raw socket, so a test
  that needs one cannot slip into the quick tier unmarked.
"""

from __future__ import annotations

import _posixsubprocess
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

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


# A test with one of these marks is in `make test` only; every other test is in `make check` too.
HEAVY_MARKS = ("root", "lab", "processes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--check-tier",
        action="store_true",
        help=f"only the tests marked none of {', '.join(HEAVY_MARKS)}, failing any that starts a process",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--check-tier"):
        return
    heavy = [item for item in items if any(item.get_closest_marker(mark) for mark in HEAVY_MARKS)]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        heavy_ids = {id(item) for item in heavy}
        items[:] = [item for item in items if id(item) not in heavy_ids]


class UnmarkedHeavyTest(RuntimeError):
    """Raised in the check tier where an unmarked test starts a process or opens a raw socket."""


class _CheckTierGuard:
    """In the check tier, every way of starting a process fails the test that tried it.

    Patched for the whole session (so a module- or session-scoped fixture is caught too, on behalf
    of the test it was set up for), where the standard library looks them up at call time:
    subprocess.Popen (so asyncio's subprocesses and os.popen too), os.fork/forkpty
    (multiprocessing's fork, pty, os.spawn*), posix_spawn, os.system and _posixsubprocess.fork_exec
    (multiprocessing's spawn); and raw sockets, which need root.  The first attempt is remembered,
    so a product that swallows the exception (or a thread that dies of it) still fails the test.
    """

    def __init__(self) -> None:
        self.current: pytest.Item | None = None
        self.attempts: dict[str, str] = {}
        self.patches = pytest.MonkeyPatch()

    def refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            if self.current is None:
                raise UnmarkedHeavyTest(f"the check tier starts no process outside a marked test: {what}")
            message = (
                f"{self.current.nodeid} {what} but is not marked: add pytestmark = pytest.mark.processes "
                "(or @pytest.mark.processes, root, lab) so that it runs in `make test` only"
            )
            self.attempts.setdefault(self.current.nodeid, message)
            raise UnmarkedHeavyTest(message)

        return refused

    def install(self) -> None:
        self.patches.setattr(subprocess.Popen, "_execute_child", self.refuse("starts a process (subprocess)"))
        self.patches.setattr(_posixsubprocess, "fork_exec", self.refuse("starts a process (fork_exec)"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            self.patches.setattr(os, name, self.refuse(f"starts a process (os.{name})"))
        socket_init = socket.socket.__init__
        raw = self.refuse("opens a raw socket (needs root)")

        def checked_init(sock: socket.socket, family: Any = -1, type: Any = -1, *args: Any, **kwargs: Any) -> None:
            if isinstance(type, int) and type != -1 and type & 0xF == socket.SOCK_RAW:
                raw()
            socket_init(sock, family, type, *args, **kwargs)

        self.patches.setattr(socket.socket, "__init__", checked_init)


_guard = _CheckTierGuard()


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--check-tier"):
        _guard.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    _guard.patches.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _guard.current = item
    yield
    _guard.current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    message = _guard.attempts.pop(item.nodeid, None)
    if message is not None:
        # the refusal is the cause of whatever else went wrong: it comes first
        report.longrepr = f"{message}\n\n{report.longrepr}" if report.failed else message
        report.outcome = "failed"


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
