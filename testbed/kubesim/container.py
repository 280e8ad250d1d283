"""The emulator's runtime for the kubelet (kubelet.py): a pod's real command and args as a child
process, with its env (downward API) resolved, its secret and emptyDir volumes as directories
under the node's workdir, and (lab nodes) inside the node's network namespace.  The scale
simulator's runtime starts in-process agents instead (kubelets.py): a thousand processes would
not fit."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from testbed.kubesim import pods
from testbed.kubesim.kubelet import PodApi
from testbed.kubesim.nodes import SimNode

Probe = Callable[[SimNode, Mapping[str, Any]], Awaitable[bool]]  # the pod's readiness probe


class Containers:
    """The runtime: a child process per pod, on nodes with a workdir; ``probe`` runs the pod's
    readiness probe against it."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def runs_on(self, node: SimNode) -> bool:
        return node.workdir is not None

    async def start(self, pod: Mapping[str, Any], node: SimNode, api: PodApi) -> Container:
        container = await Container.start(pod, node, api)
        container.ready_probe = lambda: self.probe(node, pod)
        return container


class Container:
    """One pod's container, started by the emulator's kubelet."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.ready_probe: Callable[[], Awaitable[bool]] | None = None

    def exit_code(self) -> int | None:
        return self.proc.returncode

    async def ready(self) -> bool:
        return self.ready_probe is not None and await self.ready_probe()

    def termination(self, pod: Mapping[str, Any]) -> dict[str, str]:
        """The terminated state's message (FallbackToLogsOnError: the log's tail)."""
        policy = pod["spec"]["containers"][0].get("terminationMessagePolicy")
        message = pods.termination_message(self.log, self.proc.returncode or 0, policy)
        return {"message": message} if message else {}

    @classmethod
    async def start(cls, pod: Mapping[str, Any], node: SimNode, api: PodApi) -> Container:
        assert node.workdir is not None
        spec = pod["spec"]
        container = spec["containers"][0]
        ns = pod["metadata"]["namespace"]
        root = node.workdir / pod["metadata"]["uid"]
        root.mkdir(parents=True)
        env = {}
        for item in container.get("env") or ():
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env[item["name"]] = {
                "spec.nodeName": node.name,
                "status.hostIP": node.address,
                "status.podIP": node.address,
            }.get(ref or "", item.get("value", ""))
        volumes = {v["name"]: v for v in spec.get("volumes") or ()}
        mounts: list[tuple[str, Path]] = []
        for mount in container.get("volumeMounts") or ():
            host = root / mount["name"]
            host.mkdir()
            volume = volumes[mount["name"]]
            if "secret" in volume:
                secret = await api.secret(ns, volume["secret"]["secretName"])
                for item in volume["secret"].get("items") or [{"key": k, "path": k} for k in secret.get("data") or {}]:
                    (host / item["path"]).write_bytes(base64.b64decode((secret.get("data") or {})[item["key"]]))
            mounts.append((mount["mountPath"], host))

        def resolve(arg: str) -> str:
            arg = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)
            for mount_path, host in sorted(mounts, key=lambda m: -len(m[0])):
                if arg == mount_path or arg.startswith(mount_path + "/"):
                    return str(host) + arg[len(mount_path) :]
            return arg

        argv = [resolve(a) for a in [*container.get("command", ()), *container.get("args", ())]]
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        if node.unix_socket is not None:
            argv += ["--unix", str(node.unix_socket)]
        if node.netns is not None:
            argv = ["ip", "netns", "exec", node.netns, *argv]
        log = root / "container.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log)

    async def stop(self, grace: float = 15.0) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
