"""talbench's own exceptions.  Library code raises these; only the CLI maps them to exit codes."""

from __future__ import annotations


class TalbenchError(Exception):
    """Base class.  ``exit_code`` is what the CLI exits with; ``hint`` is printed after the message."""

    exit_code = 3
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UsageError(TalbenchError):
    """Bad input or usage: a wrong option, an unknown scenario, a malformed file."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario file that cannot be used (YAML error, unknown metric, bad unit)."""


class CouldNotRun(TalbenchError):
    """The run could not happen: missing dependency, no permission, infrastructure failure."""

    exit_code = 3


class MissingDependency(CouldNotRun):
    pass


class NoPermission(CouldNotRun):
    pass


class InfrastructureError(CouldNotRun):
    pass
