"""A thin, bounded wrapper over iproute2's ``ip`` (and ``sysctl`` inside a namespace).

Every call has a timeout; a failure raises InfrastructureError with ip's own one-line message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from talbench.bench.errors import InfrastructureError, MissingDependency, NoPermission

INSTALL_HINT = "install iproute2 and procps, e.g. apt-get install --no-install-recommends iproute2 procps"


def require_root(what: str) -> None:
    """NoPermission unless root; ``what`` is the talbench command (``lab up``)."""
    if os.geteuid() != 0:
        raise NoPermission(
            f"talbench {what} needs root (it builds network namespaces)",
            hint=f"run it as root, e.g. sudo talbench {what}",
        )


@dataclass(frozen=True)
class Ip:
    binary: str
    sysctl_binary: str
    timeout: float = 15.0

    @classmethod
    def locate(cls) -> Ip:
        ip, sysctl = shutil.which("ip"), shutil.which("sysctl")
        if ip is None or sysctl is None:
            missing = "ip" if ip is None else "sysctl"
            raise MissingDependency(f"the lab needs the {missing!r} command, which is not installed", hint=INSTALL_HINT)
        return cls(ip, sysctl)

    def run(self, *args: str, netns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
        argv = [self.binary, *(("-n", netns) if netns else ()), *args]
        return self._run(argv, check=check, stdin=stdin)

    def batch(self, commands: Sequence[str], *, netns: str | None = None) -> None:
        """Run many ``ip`` commands (one per line, without the leading ``ip``) in one process."""
        if commands:
            self.run("-batch", "-", netns=netns, stdin="\n".join(commands) + "\n")

    def _run(self, argv: list[str], *, check: bool, stdin: str | None = None) -> str:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InfrastructureError(f"{' '.join(argv[:6])} did not finish within {self.timeout:g}s") from exc
        except OSError as exc:
            raise MissingDependency(f"cannot run {argv[0]}: {exc}", hint=INSTALL_HINT) from exc
        if check and done.returncode != 0:
            message = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[0]
            raise InfrastructureError(f"{' '.join(argv[:8])}: {message}")
        return done.stdout

    # -- namespaces -------------------------------------------------------------------------

    def netns_list(self) -> tuple[str, ...]:
        out = self.run("netns", "list")
        return tuple(line.split()[0] for line in out.splitlines() if line.strip())

    def netns_add(self, name: str) -> None:
        self.run("netns", "add", name)

    def netns_delete(self, name: str) -> bool:
        """Delete ``name``; False when it did not exist."""
        if name not in self.netns_list():
            return False
        self.run("netns", "delete", name)
        return True

    def netns_pids(self, name: str) -> tuple[int, ...]:
        out = self.run("netns", "pids", name, check=False)
        return tuple(int(tok) for tok in out.split() if tok.isdigit())

    def exec_argv(self, netns: str, argv: Sequence[str]) -> list[str]:
        """argv that runs ``argv`` inside ``netns`` (ip execs it: the pid is the program's)."""
        return [self.binary, "netns", "exec", netns, *argv]

    def sysctl(self, netns: str, settings: Mapping[str, str]) -> None:
        if settings:
            argv = self.exec_argv(netns, [self.sysctl_binary, "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])
            self._run(argv, check=True)
