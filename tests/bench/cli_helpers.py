"""The CLI as a user runs it, for the CLI tests: ``talbench(*args)`` runs a real `talbench`
process; ``assert_one_line_error`` checks its exit code and one-line stderr."""

import subprocess
import sys


def talbench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talbench.bench.cli", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]
