"""One pod on one lab node, from the moment the lab kubelet sees it bound there until its object
is gone: volumes, init containers in order, containers side by side under runc, readiness
probes, restarts with back-off, status reports, and graceful deletion (SIGTERM, the grace
period, SIGKILL, then the object deleted with grace 0 so that a namespace's deletion completes).

Back-offs are the kubelet's: a crashed container restarts at once the first time, then after
10 s, 20 s, ... up to 300 s (reset after 10 minutes of running); an image the kubelet does not
have is ErrImagePull, then ImagePullBackOff for 10 s, 20 s, ... up to 300 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.kubelab.kubelet import container as kubelet_container
from testbed.kubelab.kubelet import runc as kubelet_runc
from testbed.kubelab.kubelet import volumes as kubelet_volumes
from testbed.kubelab.kubelet.api import ApiError
from testbed.kubelab.kubelet.config import KubeletImage
from testbed.kubelab.kubelet.container import NodeContext
from testbed.kubelab.kubelet.spec import Mount, SpecError
from testbed.kubelab.kubelet.status import ContainerRecord, now, pod_status, same

log = logging.getLogger(__name__)

BACKOFF_START = 10.0
VOLUME_RETRY = 0.5  # seconds before a pod's volumes are asked for again, doubling up to BACKOFF_START
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
KILL_WAIT = 5.0


def _backoff(failures: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, failures - 1))


class PodWorker:
    """The pod's life on its node; ``update`` with each new version of the object."""

    def __init__(self, ctx: NodeContext, pod: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid = str(meta["uid"])
        self.name = str(meta["name"])
        self.namespace = str(meta["namespace"])
        spec = pod.get("spec") or {}
        self.policy = str(spec.get("restartPolicy") or "Always")
        self.dir = ctx.config.pods_dir / self.uid
        self.init = {
            str(c["name"]): ContainerRecord(str(c["name"]), str(c["image"])) for c in spec.get("initContainers") or ()
        }
        self.main = {
            str(c["name"]): ContainerRecord(str(c["name"]), str(c["image"])) for c in spec.get("containers") or ()
        }
        self.init_done = not self.init
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.gone_from_api = False
        self.reported: dict[str, Any] = dict(pod.get("status") or {})
        self.start_time = str(self.reported.get("startTime") or now())
        self.publish_lock = asyncio.Lock()
        self.data: dict[tuple[str, str], dict[str, str] | None] = {}

    # -- news from the API -------------------------------------------------------------------

    def update(self, pod: Mapping[str, Any]) -> None:
        self.pod = pod
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.stopping.set()

    def gone(self) -> None:
        """The object was deleted outright (grace 0): stop at once, delete nothing."""
        self.gone_from_api = True
        self.stopping.set()

    @property
    def grace(self) -> float:
        if self.gone_from_api:
            return 0.0
        meta, spec = self.pod.get("metadata") or {}, self.pod.get("spec") or {}
        value = meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
        return float(value if value is not None else 30)

    # -- the pod's life ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.publish()
            volumes = await self._prepared_volumes()
            if volumes is not None:
                await self._containers(volumes)
            await self.stopping.wait()  # a finished pod stays until it is deleted
        finally:
            await asyncio.shield(self._finish())

    async def _containers(self, volumes: Mapping[str, Mount]) -> None:
        spec = self.pod.get("spec") or {}
        for container in spec.get("initContainers") or ():
            if not await self._container_loop(container, volumes, init=True):
                await self.publish()
                return
        self.init_done = True
        await self.publish()
        loops = [
            asyncio.create_task(self._container_loop(c, volumes, init=False)) for c in spec.get("containers") or ()
        ]
        stop = asyncio.create_task(self.stopping.wait())
        try:
            while not stop.done() and not all(t.done() for t in loops):
                await asyncio.wait([*loops, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if self.stopping.is_set():
                await self._stop_containers()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _prepared_volumes(self) -> dict[str, Mount] | None:
        """The pod's volumes, or None (stopping, or a pod asking for what cannot be given:
        CreateContainerConfigError).  An API that refuses or fails for now is asked again, as the
        kubelet retries a mount while the pod stays ContainerCreating: the API server's node
        authorizer learns that a pod bound to this node may read its secrets a moment after the
        binding, and a kubelet that asks at once can be refused ("no relationship found")."""
        failures = 0
        while True:
            try:
                return await self._volumes()
            except SpecError as exc:
                await self._config_error(str(exc))
                return None
            except (ApiError, OSError) as exc:
                failures += 1
                log.warning("pod %s/%s: volumes not ready (%s), asking again", self.namespace, self.name, exc)
                if await self._sleep(min(BACKOFF_START, VOLUME_RETRY * 2 ** (failures - 1))):
                    return None

    async def _config_error(self, message: str) -> None:
        log.warning("pod %s/%s: %s", self.namespace, self.name, message)
        for records in (self.init, self.main):
            for name, record in records.items():
                records[name] = record.with_changes(
                    state="waiting", reason="CreateContainerConfigError", message=message
                )
        await self.publish()

    async def _volumes(self) -> dict[str, Mount]:
        refs, token_sources = kubelet_volumes.requests(self.pod)
        data: dict[tuple[str, str], dict[str, str] | None] = {}
        for kind, name in refs:
            plural = "secrets" if kind == "secret" else "configmaps"
            try:
                found = await self.ctx.api.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                data[(kind, name)] = None
                continue
            data[(kind, name)] = {**(found.get("binaryData") or {}), **(found.get("data") or {})}
        tokens = {}
        for source in token_sources:
            audience = str(source.get("audience") or "")
            tokens[audience] = await self._token(audience, int(source.get("expirationSeconds") or 3607))
        self.data = data
        return await asyncio.to_thread(
            kubelet_volumes.materialize,
            self.pod,
            self.dir,
            self.ctx.node_root,
            self.lookup,
            tokens,
            self.ctx.node.address,
        )

    async def _token(self, audience: str, seconds: int) -> str:
        account = str((self.pod.get("spec") or {}).get("serviceAccountName") or "default")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid},
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        answer = await self.ctx.api.call("POST", path, body=body)
        return str((answer.get("status") or {}).get("token") or "")

    # -- one container -----------------------------------------------------------------------

    async def _set(self, init: bool, name: str, **changes: Any) -> None:
        records = self.init if init else self.main
        records[name] = records[name].with_changes(**changes)
        await self.publish()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or less when the pod is being stopped; True when it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def _container_loop(self, container: Mapping[str, Any], volumes: Mapping[str, Mount], *, init: bool) -> bool:
        """Run the container (again) as the restart policy says; True when it completed (an init
        container that succeeded, a container that will not run again)."""
        name = str(container["name"])
        pulls = crashes = 0
        while not self.stopping.is_set():
            image = self.ctx.config.image(str(container["image"]))
            if image is None:
                pulls += 1
                message = kubelet_container.pull_message(self.ctx.config, str(container["image"]))
                await self._set(init, name, state="waiting", reason="ErrImagePull", message=message)
                if await self._sleep(1.0):
                    break
                back = f'Back-off pulling image "{container["image"]}"'
                await self._set(init, name, reason="ImagePullBackOff", message=back)
                if await self._sleep(_backoff(pulls)):
                    break
                continue
            try:
                bundle, cid = kubelet_container.write_bundle(
                    self.ctx, self.pod, self.dir, container, image, volumes, self.lookup
                )
            except (SpecError, OSError, KeyError, ValueError) as exc:
                await self._set(init, name, state="waiting", reason="CreateContainerConfigError", message=str(exc))
                if await self._sleep(BACKOFF_START):
                    break
                continue
            began = time.monotonic()
            code = await self._run_once(container, init, bundle, cid, image)
            if self.stopping.is_set():
                break
            if code == 0 and (init or self.policy != "Always"):
                return True
            if self.policy == "Never":
                return init is False
            crashes = 1 if time.monotonic() - began > BACKOFF_RESET else crashes + 1
            record = (self.init if init else self.main)[name]
            delay = 0.0 if crashes == 1 else _backoff(crashes - 1)
            message = (
                f"back-off {delay:g}s restarting failed container={name} pod={self.name}_{self.namespace}({self.uid})"
            )
            await self._set(
                init,
                name,
                state="waiting",
                reason="CrashLoopBackOff" if delay else "ContainerCreating",
                message=message if delay else "",
                restart_count=record.restart_count + 1,
                last_terminated=record.terminated(),
                ready=False,
            )
            if delay and await self._sleep(delay):
                break
        return False

    async def _run_once(
        self, container: Mapping[str, Any], init: bool, bundle: Path, cid: str, image: KubeletImage
    ) -> int:
        name = str(container["name"])
        record = (self.init if init else self.main)[name]
        output = self.dir / "logs" / name / f"{record.restart_count}.log"
        (self.dir / "logs" / name / f"{record.restart_count - 2}.log").unlink(missing_ok=True)
        proc = await kubelet_runc.start(bundle, cid, output)
        self.procs[name] = proc
        probe = None if init else container.get("readinessProbe")
        await self._set(
            init,
            name,
            state="running",
            reason="",
            message="",
            started_at=now(),
            finished_at=None,
            exit_code=None,
            container_id=f"runc://{cid}",
            image_id=image.digest,
            ready=probe is None,
        )
        probes = kubelet_container.start_probes(
            None if init else container,
            node=self.ctx.node,
            cid=cid,
            grace=lambda: self.grace,
            set_ready=lambda ready: self._set(init, name, ready=ready),
        )
        try:
            code = await proc.wait()
        finally:
            self.procs.pop(name, None)
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)
        message = ""
        if code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = kubelet_container.tail(output)
        await self._set(
            init,
            name,
            state="terminated",
            reason="Completed" if code == 0 else "Error",
            exit_code=code,
            signal=None,
            finished_at=now(),
            message=message,
            ready=False,
        )
        return code

    # -- stopping ----------------------------------------------------------------------------

    async def _stop_containers(self) -> None:
        """SIGTERM to every running container, ``grace`` seconds, then SIGKILL (bounded)."""
        running = dict(self.procs)
        if not running:
            return
        cids = {name: kubelet_runc.container_id(self.ctx.config.lab_id, self.uid, name) for name in running}
        for cid in cids.values():
            await kubelet_runc.signal(cid, "TERM" if self.grace > 0 else "KILL")
        waits = [asyncio.ensure_future(proc.wait()) for proc in running.values()]
        _, pending = await asyncio.wait(waits, timeout=max(self.grace, 0.1))
        if pending:
            for cid in cids.values():
                await kubelet_runc.signal(cid, "KILL")
            await asyncio.wait(pending, timeout=KILL_WAIT)
        for proc in running.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # runc itself, should the container never exit

    async def _finish(self) -> None:
        for name in [*self.init, *self.main]:
            await kubelet_runc.delete(kubelet_runc.container_id(self.ctx.config.lab_id, self.uid, name))
        await asyncio.to_thread(shutil.rmtree, self.dir, True)
        if self.gone_from_api or not self.stopping.is_set():
            return
        await self.publish()
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            await self.ctx.api.call("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s/%s: could not delete: %s", self.namespace, self.name, exc)

    # -- status ------------------------------------------------------------------------------

    async def publish(self) -> None:
        """Report the pod's status when it says something new (bounded; a failure waits for the
        next change or the node's resync)."""
        async with self.publish_lock:
            status = pod_status(
                init=list(self.init.values()),
                main=list(self.main.values()),
                policy=self.policy,
                init_done=self.init_done,
                host_ip=self.ctx.node.address,
                start_time=self.start_time,
                previous=self.reported,
            )
            if same(status, self.reported) or self.gone_from_api:
                return
            path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
            try:
                await self.ctx.api.patch(path, {"metadata": {"uid": self.uid}, "status": status})
                self.reported = status
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("pod %s/%s: status not reported: %s", self.namespace, self.name, exc)

    def log_path(self, container: str, previous: bool) -> Path | None:
        """The container's output of its current (or previous) run."""
        runs = sorted(
            (p for p in (self.dir / "logs" / container).glob("*.log") if p.stem.isdigit()), key=lambda p: int(p.stem)
        )
        wanted = -2 if previous else -1
        return runs[wanted] if len(runs) >= -wanted else None

    def lookup(self, kind: str, name: str) -> Mapping[str, str] | None:
        """A secret's or config map's data, as fetched before the volumes were written."""
        return self.data.get((kind, name))
