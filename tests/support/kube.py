"""The operator against an in-memory Kubernetes API (kmock) on loopback, for integration tests.

`cluster` yields a `Cluster`: the kmock emulator with the bundled resources and the
LivepeerCapability resource declared, plus a client that plays the parts a real cluster
would (kubelet, Job and Deployment controllers, garbage collector) by writing objects and
their status. `operator` yields a factory that starts the real kopf operator in this event
loop against that API (and restarts it) with short intervals.

kmock has no uid/generation/creationTimestamp, label selectors, ownerReference GC or
server-side apply: the emulator (lpbyoc.commands.demo.api_double) stamps uids on creation,
`create_capability` sets generation and `patch_capability_spec` bumps it, `collect_garbage`
does what the GC would, and the operator runs with the merge-patch strategy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kmock
import kopf
import pytest_asyncio
from lpbyoc import naming, orchestrator
from lpbyoc.commands.demo import LoopThread, api_double, prefetch_pod_status
from lpbyoc.kube import Kube
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.reconcile import Reconciler, Runtime
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import API_VERSION, KIND

NAMESPACE = "default"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Resources the operator watches (one watch stream each, plus none extra for shared ones).
WATCHED_RESOURCES = 6

FAST_TUNING = RuntimeTuning(
    resync_interval=1.0,
    progress_interval=0.5,
    debounce=0.05,
    concurrency=32,
    progress_timeout=0.5,
    reference_ttl=0.5,
    retry_base=0.5,
    retry_cap=2.0,
)


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], within: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what or predicate!r} (last: {last!r})")


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cluster:
    """The API double and a client acting as the rest of the cluster."""

    api: kmock.KubernetesEmulator
    url: str
    kube: Kube
    namespace: str = NAMESPACE

    # -- reading -------------------------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return await self.kube.get(api_version, kind, name, namespace or self.namespace)

    async def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return await self.kube.list(api_version, kind, namespace or self.namespace)

    async def capability(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return await self.get(API_VERSION, KIND, name, namespace)

    async def status(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        cap = await self.capability(name, namespace)
        return dict((cap or {}).get("status") or {})

    async def condition(self, name: str, cond_type: str, namespace: str | None = None) -> dict[str, Any]:
        status = await self.status(name, namespace)
        return next((c for c in status.get("conditions") or () if c.get("type") == cond_type), {})

    async def wait_phase(self, name: str, phase: str, within: float = 10.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            status = await self.status(name)
            return status if status.get("phase") == phase else None

        result: dict[str, Any] = await wait_for(reached, within, what=f"{name} phase {phase}")
        return result

    async def wait_condition(
        self, name: str, cond_type: str, reason: str, within: float = 10.0
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            cond = await self.condition(name, cond_type)
            return cond if cond.get("reason") == reason else None

        result: dict[str, Any] = await wait_for(reached, within, what=f"{name} {cond_type} reason {reason}")
        return result

    def requests_by_method(self) -> Counter[str]:
        """Requests the API double has served so far, by HTTP method."""
        return Counter({m: len(self.api[kmock.method(m)]) for m in (*WRITE_METHODS, "GET")})

    def writes(self) -> int:
        counts = self.requests_by_method()
        return sum(counts[m] for m in WRITE_METHODS)

    async def quiet(self, for_s: float = 1.5, within: float = 20.0) -> None:
        """Wait until nobody has written to the API for `for_s` seconds."""
        deadline = time.monotonic() + within
        last, since = self.writes(), time.monotonic()
        while time.monotonic() - since < for_s:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the API was still being written to after {within}s: {self.write_log()[-5:]}"
                )
            await asyncio.sleep(0.1)
            if self.writes() != last:
                last, since = self.writes(), time.monotonic()

    def write_log(self) -> list[str]:
        """`METHOD path` of every write served so far (to say which write broke an expectation)."""
        ordered = sorted((r for m in WRITE_METHODS for r in self.api[kmock.method(m)]), key=lambda r: r.id)
        return [f"{r.method.value} {r.url.path}" for r in ordered]

    def write_bodies(self) -> list[tuple[str, Any]]:
        """(`METHOD path`, body) of every write, in order."""
        ordered = sorted((r for m in WRITE_METHODS for r in self.api[kmock.method(m)]), key=lambda r: r.id)
        return [(f"{r.method.value} {r.url.path}", r.data) for r in ordered]

    # -- capabilities --------------------------------------------------------------------------

    async def create_capability(
        self, name: str, spec: Mapping[str, Any], namespace: str | None = None, *, uid: str | None = None
    ) -> dict[str, Any]:
        """Create a CR with the uid, generation and creationTimestamp a real API server would set."""
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace or self.namespace,
                "uid": uid or str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": _now(),
                # kopf guards its JSON patches (finalizers) with a test on resourceVersion.
                "resourceVersion": "1",
            },
            "spec": dict(spec),
        }
        return await self.kube.create(body)

    async def patch_capability_spec(
        self, name: str, spec_patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch the spec and bump generation, as the API server does on a spec change."""
        current = await self.capability(name, namespace)
        assert current is not None, f"capability {name} not found"
        generation = int(current["metadata"].get("generation") or 1) + 1
        patch = {"metadata": {"generation": generation}, "spec": dict(spec_patch)}
        return await self.kube.patch_merge(API_VERSION, KIND, name, namespace or self.namespace, patch)

    async def delete_capability(self, name: str, namespace: str | None = None) -> None:
        await self.kube.delete(API_VERSION, KIND, name, namespace or self.namespace)

    # -- playing the cluster's controllers -----------------------------------------------------

    async def create_secret(self, name: str, data: Mapping[str, str], namespace: str | None = None) -> None:
        import base64

        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        await self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace or self.namespace},
                "data": encoded,
            }
        )

    async def create_storage_class(self, name: str, provisioner: str = "test") -> None:
        await self.kube.create(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name},
                "provisioner": provisioner,
            }
        )

    async def bind_claim(self, name: str, namespace: str | None = None) -> None:
        await self.kube.patch_status(
            "v1", "PersistentVolumeClaim", name, namespace or self.namespace, {"phase": "Bound"}
        )

    async def add_prefetch_pod(
        self,
        job_name: str,
        *,
        namespace: str | None = None,
        ip: str | None = "127.0.0.1",
        result: Mapping[str, Any] | None = None,
        suffix: str = "a",
    ) -> dict[str, Any]:
        """A pod of the Job: Running with `ip`, or terminated with `result` as its termination message."""
        ns = namespace or self.namespace
        job = await self.get("batch/v1", "Job", job_name, ns)
        assert job is not None, f"Job {job_name} not found"
        labels = {
            **(job["spec"]["template"].get("metadata", {}).get("labels") or {}),
            "batch.kubernetes.io/job-name": job_name,
            "job-name": job_name,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{job_name}-{suffix}",
                "namespace": ns,
                "labels": labels,
                "uid": str(uuid.uuid4()),
            },
            "spec": {"containers": [{"name": "prefetch", "image": "x"}]},
            "status": prefetch_pod_status(result, ip),
        }
        existing = await self.get("v1", "Pod", pod["metadata"]["name"], ns)
        if existing is None:
            return await self.kube.create(pod)
        return await self.kube.patch_merge(
            "v1", "Pod", pod["metadata"]["name"], ns, {"status": pod["status"]}
        )

    async def finish_job(
        self, job_name: str, result: Mapping[str, Any], *, namespace: str | None = None, suffix: str = "a"
    ) -> None:
        """The Job's pod exits with `result` in its termination log; the Job controller marks the Job."""
        ns = namespace or self.namespace
        await self.add_prefetch_pod(job_name, namespace=ns, ip=None, result=result, suffix=suffix)
        if result.get("result") == "Succeeded":
            status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        else:
            status = {
                "failed": 1,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            }
        await self.kube.patch_status("batch/v1", "Job", job_name, ns, status)

    async def make_deployment_available(
        self, name: str, replicas: int = 1, namespace: str | None = None
    ) -> None:
        status = {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
        }
        await self.kube.patch_status("apps/v1", "Deployment", name, namespace or self.namespace, status)

    async def add_worker_pod(
        self,
        capability: str,
        *,
        namespace: str | None = None,
        suffix: str = "a",
        ready: bool = True,
        ip: str = "10.0.0.10",
        unschedulable_message: str | None = None,
    ) -> dict[str, Any]:
        ns = namespace or self.namespace
        labels = naming.capability_labels(capability, "worker")
        if unschedulable_message is not None:
            conditions = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": unschedulable_message,
                }
            ]
            status: dict[str, Any] = {"phase": "Pending", "conditions": conditions}
        else:
            conditions = [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ]
            status = {"phase": "Running", "podIP": ip, "conditions": conditions}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{naming.worker_name(capability)}-{suffix}",
                "namespace": ns,
                "labels": labels,
                "uid": str(uuid.uuid4()),
            },
            "spec": {"containers": [{"name": "adapter", "image": "x"}]},
            "status": status,
        }
        return await self.kube.create(pod)

    async def collect_garbage(self, namespace: str | None = None) -> list[str]:
        """Delete managed objects whose capability owners are all gone (the GC's job on a real cluster)."""
        ns = namespace or self.namespace
        alive = {c["metadata"].get("uid") for c in await self.list(API_VERSION, KIND, ns)}
        deleted: list[str] = []
        for api_version, kind in (
            ("v1", "PersistentVolumeClaim"),
            ("batch/v1", "Job"),
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
        ):
            for obj in await self.list(api_version, kind, ns):
                owners = [r for r in obj["metadata"].get("ownerReferences") or () if r.get("kind") == KIND]
                if owners and not any(r.get("uid") in alive for r in owners):
                    await self.kube.delete(api_version, kind, obj["metadata"]["name"], ns)
                    deleted.append(f"{kind}/{obj['metadata']['name']}")
        return deleted


@dataclass
class OperatorRun:
    """The real kopf operator, in its own thread and loop (see LoopThread), restartable."""

    cluster: Cluster
    namespaces: tuple[str, ...] = (NAMESPACE,)
    clusterwide: bool = False  # --all-namespaces: `namespaces` is then ignored
    tuning: RuntimeTuning = FAST_TUNING
    settings: OperatorSettings = field(default_factory=lambda: OperatorSettings(patch_strategy="merge"))
    runtime: Runtime | None = None
    _thread: LoopThread | None = None
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event | None = None
    _memo: Any = None

    @property
    def reconciler(self) -> Reconciler:
        assert self._memo is not None
        reconciler: Reconciler = self._memo.reconciler
        return reconciler

    async def start(self) -> OperatorRun:
        assert self._thread is None, "already running"
        import lpbyoc.handlers  # noqa: F401  (registers the handlers)

        watches_before = len(self.cluster.api[kmock.action.WATCH])
        self._thread = LoopThread("operator").__enter__()
        await asyncio.to_thread(self._thread.run, self._spawn())

        async def watching() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # surface a crash at startup
            streams = WATCHED_RESOURCES * (1 if self.clusterwide else len(self.namespaces))
            return len(self.cluster.api[kmock.action.WATCH]) - watches_before >= streams

        await wait_for(watching, within=15, what="the operator's watch streams")
        return self

    async def _spawn(self) -> None:
        orchestrator.reset()
        kube = Kube.connect(server=self.cluster.url, patch_strategy=self.settings.patch_strategy)
        self.runtime = Runtime(kube=kube, settings=self.settings, tuning=self.tuning)
        self._memo = kopf.Memo(runtime=self.runtime, server=self.cluster.url, api_double=True)
        self._stop = asyncio.Event()
        scope: dict[str, Any] = (
            {"clusterwide": True} if self.clusterwide else {"namespaces": list(self.namespaces)}
        )
        self._task = asyncio.create_task(
            kopf.operator(**scope, standalone=True, memo=self._memo, stop_flag=self._stop)
        )

    async def stop(self) -> None:
        """Set kopf's stop flag from outside its loop and wait for it to finish: a task spawned
        in its loop to do this would count as hung to kopf and be cancelled."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        task, stop = self._task, self._stop
        assert task is not None and stop is not None
        finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread.loop.call_soon_threadsafe(task.add_done_callback, lambda _: finished.set_result(None))
        thread.loop.call_soon_threadsafe(stop.set)
        try:
            await asyncio.wait_for(asyncio.wrap_future(finished), timeout=15)
            if self.runtime is not None:
                await asyncio.to_thread(thread.run, self.runtime.kube.close())
        finally:
            self._task = None
            await asyncio.to_thread(thread.__exit__, None, None, None)

    async def restart(self) -> OperatorRun:
        await self.stop()
        return await self.start()


@pytest_asyncio.fixture()
async def cluster() -> AsyncIterator[Cluster]:
    with LoopThread("kmock") as thread:
        api, url = api_double(thread)
        kube = Kube.connect(server=url, patch_strategy="merge")
        try:
            yield Cluster(api=api, url=url, kube=kube)
        finally:
            await kube.close()


@pytest_asyncio.fixture()
async def operator(cluster: Cluster) -> AsyncIterator[Callable[..., Awaitable[OperatorRun]]]:
    """`await operator()` starts the operator (keyword arguments go to `OperatorRun`)."""
    runs: list[OperatorRun] = []

    async def start(**kwargs: Any) -> OperatorRun:
        run = OperatorRun(cluster=cluster, **kwargs)
        runs.append(run)
        return await run.start()

    try:
        yield start
    finally:
        for run in runs:
            await run.stop()
