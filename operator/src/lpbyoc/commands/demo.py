"""`lpbyoc demo`: watch one capability converge, with no cluster.

Starts an in-memory Kubernetes API (kmock) and a stand-in orchestrator on loopback, runs the
real operator in this process, applies an example capability and plays the parts a cluster
would (the kubelet, the Job and Deployment controllers, the prefetcher's progress endpoint),
printing each phase the capability goes through and every object the operator creates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kopf
import yaml
from aiohttp import web

from lpbyoc import naming
from lpbyoc.kube import Kube
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.reconcile import Runtime
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, parse_spec

T = TypeVar("T")
EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "byoc-image-restyle.yaml"
NAMESPACE = "default"
DEMO_SHA = "5d1c0ffee5d1c0ffee5d1c0ffee5d1c0ffee5d1c"
DEMO_BYTES = 48 * 1024 * 1024
ORCH_SECRET = "demo-orch-secret"
CHILD_KINDS = (
    ("v1", "PersistentVolumeClaim"),
    ("batch/v1", "Job"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
)


def utc_now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prefetch_pod_status(result: Mapping[str, Any] | None, ip: str | None = None) -> dict[str, Any]:
    """The status the kubelet writes for a prefetch pod: running, or exited with `result` (the
    prefetcher's result JSON) as its termination message. The demo and the tests play kubelet."""
    if result is None:
        state: dict[str, Any] = {"running": {"startedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        phase = "Running"
    else:
        exit_code = 0 if result.get("result") == "Succeeded" else 1
        reason = "Completed" if exit_code == 0 else "Error"
        state = {"terminated": {"exitCode": exit_code, "reason": reason, "message": json.dumps(result)}}
        phase = "Succeeded" if exit_code == 0 else "Failed"
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": "prefetch",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": state,
            }
        ],
    }
    if ip is not None:
        status["podIP"] = ip
    return status


class LoopThread:
    """An event loop in its own thread for the servers the operator talks to.

    kopf, when it stops, waits for (then cancels) every task spawned in its loop since it
    started; servers in their own loop stay out of that and shut down on their own terms.
    """

    def __init__(self, name: str = "servers") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._stack = contextlib.AsyncExitStack()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout_s)

    def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager in the thread's loop; it exits when the thread stops."""
        return self.run(self._stack.enter_async_context(context))

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


def api_double(thread: LoopThread, request_log_limit: int | None = None) -> tuple[Any, str]:
    """Start kmock in `thread` with the bundled resources and LivepeerCapability declared.

    Returns the emulator (its `requests` and `objects` are there to inspect, `method_counts`
    counts every request by HTTP method) and its URL. kmock matches each request against its
    whole request log, which makes it quadratic under load; `request_log_limit` keeps only
    the most recent requests (for benchmarks: `requests` then holds only those)."""
    import kmock  # the API double is a development dependency, needed only here

    class ApiServerEmulator(kmock.KubernetesEmulator):
        """Stamps uid/resourceVersion/generation/creationTimestamp and resolves generateName on
        creation, as a real API server does (kopf keys its indexes by uid, and names its Events
        by generateName)."""

        method_counts: Counter[str] = Counter()
        in_flight: dict[int, Any] = {}

        async def _handle(self, request: Any) -> Any:
            self.method_counts[str(request.method.value)] += 1
            self.in_flight[id(request)] = request
            if request_log_limit is not None and len(self._requests) > request_log_limit:
                # Requests still being served (watches included) must stay: kmock looks them up.
                self._requests[:] = list(self.in_flight.values())
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("resourceVersion", "1")
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", utc_now())
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            try:
                return await super()._handle(request)
            finally:
                self.in_flight.pop(id(request), None)

    api = thread.enter(ApiServerEmulator())
    server = thread.enter(kmock.Server(api))
    api.resources.load_bundled()
    api.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = {  # type: ignore[assignment]
        "kind": KIND,
        "namespaced": True,
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "subresources": ["status", "scale"],
    }
    return api, str(server.url).rstrip("/")


class DemoPeers:
    """The orchestrator's BYOC registration endpoint and the prefetcher's progress endpoint."""

    def __init__(self) -> None:
        self.registered: dict[str, Any] = {}
        self.download_started: float | None = None
        self.download_seconds = 3.0

    def progress(self) -> dict[str, Any]:
        elapsed = 0.0 if self.download_started is None else time.monotonic() - self.download_started
        fraction = min(1.0, elapsed / self.download_seconds)
        done = int(DEMO_BYTES * fraction)
        return {
            "state": "done" if fraction >= 1 else "downloading",
            "sha": DEMO_SHA,
            "bytesDone": done,
            "bytesTotal": DEMO_BYTES,
            "filesDone": int(3 * fraction),
            "filesTotal": 3,
            "rateBytesPerSecond": DEMO_BYTES / self.download_seconds,
            "etaSeconds": max(0.0, self.download_seconds - elapsed),
        }

    async def _register(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != ORCH_SECRET:
            return web.Response(status=400, text="invalid authorization")
        try:
            body = await request.json()
        except (ValueError, ConnectionResetError):  # bad JSON, or the operator stopped mid-request
            return web.Response(status=400, text="invalid request")
        self.registered[str(body.get("name"))] = body
        return web.Response(text="ok")

    async def _unregister(self, request: web.Request) -> web.Response:
        self.registered.pop(await request.text(), None)
        return web.Response(text="ok")

    async def _progress(self, request: web.Request) -> web.Response:
        return web.json_response(self.progress())

    async def start(self) -> tuple[str, int, web.AppRunner]:
        app = web.Application()
        app.router.add_post("/capability/register", self._register)
        app.router.add_post("/capability/unregister", self._unregister)
        app.router.add_get("/progress", self._progress)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}", port, runner


def load_example(path: Path, orchestrator_url: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    body.setdefault("metadata", {})["namespace"] = NAMESPACE
    orch = body["spec"]["orchestrator"]
    orch["url"] = orchestrator_url  # the stand-in orchestrator on loopback
    orch.pop("tls", None)
    return body


class Kubelet:
    """Writes what the cluster's controllers and the kubelet would, one step per call."""

    def __init__(self, kube: Kube, peers: DemoPeers, body: dict[str, Any]) -> None:
        self.kube = kube
        self.peers = peers
        self.name = body["metadata"]["name"]
        self.spec = parse_spec(body["spec"])
        self.job_name = naming.prefetch_job_name(self.spec)
        self.worker = naming.worker_name(self.name)
        self.done: set[str] = set()

    async def _pod(self, name: str, labels: dict[str, str], status: dict[str, Any]) -> None:
        await self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
                "spec": {"containers": [{"name": "main", "image": self.spec.serving.image}]},
                "status": status,
            }
        )

    async def step(self) -> None:
        job = await self.kube.get("batch/v1", "Job", self.job_name, NAMESPACE)
        if job is not None and "prefetch-running" not in self.done:
            labels = {**job["spec"]["template"]["metadata"]["labels"], "job-name": self.job_name}
            await self._pod(f"{self.job_name}-run", labels, {"phase": "Running", "podIP": "127.0.0.1"})
            self.peers.download_started = time.monotonic()
            self.done.add("prefetch-running")
            say(f"kubelet: prefetch pod {self.job_name}-run is running and serves /progress")
        progress = self.peers.progress()
        if (
            "prefetch-running" in self.done
            and progress["state"] == "done"
            and "prefetch-done" not in self.done
        ):
            result = {
                "result": "Succeeded",
                "reason": "Succeeded",
                "sha": DEMO_SHA,
                "bytes": DEMO_BYTES,
                "files": 3,
            }
            status = prefetch_pod_status(result)
            await self.kube.patch_merge("v1", "Pod", f"{self.job_name}-run", NAMESPACE, {"status": status})
            await self.kube.patch_status(
                "batch/v1",
                "Job",
                self.job_name,
                NAMESPACE,
                {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
            )
            self.done.add("prefetch-done")
            say(f"Job controller: {self.job_name} complete (revision {DEMO_SHA[:12]})")
        deployment = await self.kube.get("apps/v1", "Deployment", self.worker, NAMESPACE)
        if deployment is not None and "worker-ready" not in self.done:
            replicas = int(deployment["spec"].get("replicas") or 1)
            for i in range(replicas):
                ready = {
                    "phase": "Running",
                    "podIP": f"10.0.0.{10 + i}",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True"},
                        {"type": "Ready", "status": "True"},
                    ],
                }
                await self._pod(f"{self.worker}-{i}", naming.capability_labels(self.name, "worker"), ready)
            await self.kube.patch_status(
                "apps/v1",
                "Deployment",
                self.worker,
                NAMESPACE,
                {
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "updatedReplicas": replicas,
                },
            )
            self.done.add("worker-ready")
            say(f"Deployment controller: {self.worker} has {replicas}/{replicas} replicas available")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


async def drive(
    api_url: str, peers: DemoPeers, peers_url: str, peers_port: int, example: Path, deadline_s: float
) -> int:
    settings = OperatorSettings(patch_strategy="merge", progress_port=peers_port)
    operator_kube = Kube.connect(server=api_url, patch_strategy="merge")
    runtime = Runtime(
        kube=operator_kube, settings=settings, tuning=RuntimeTuning(resync_interval=5, progress_interval=0.5)
    )
    memo = kopf.Memo(runtime=runtime, server=api_url, api_double=True)
    stop = asyncio.Event()
    import lpbyoc.handlers  # noqa: F401  (registers the handlers with kopf)

    operator = asyncio.create_task(
        kopf.operator(namespaces=[NAMESPACE], standalone=True, memo=memo, stop_flag=stop)
    )
    kube = Kube.connect(server=api_url, patch_strategy="merge")
    try:
        for secret, key, value in (
            ("orch-secret", "secret", ORCH_SECRET),
            ("worker-token", "token", "demo-token"),
        ):
            import base64

            data = {key: base64.b64encode(value.encode()).decode()}
            await kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret, "namespace": NAMESPACE},
                    "data": data,
                }
            )
        body = load_example(example, peers_url)
        name = body["metadata"]["name"]
        await asyncio.sleep(0.5)  # let kopf open its watches before the object appears
        await kube.create(body)
        say(f"applied {example.name}: {KIND} {NAMESPACE}/{name}")
        kubelet = Kubelet(kube, peers, body)
        seen_children: set[str] = set()
        last = ("", "")
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            if operator.done():
                operator.result()
                say("the operator stopped unexpectedly")
                return 1
            for api_version, kind in CHILD_KINDS:
                for obj in await kube.list(api_version, kind, NAMESPACE):
                    key = f"{kind}/{obj['metadata']['name']}"
                    if key not in seen_children:
                        seen_children.add(key)
                        say(f"operator created {key}")
            status = ((await kube.get(API_VERSION, KIND, name, NAMESPACE)) or {}).get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions") or () if c.get("type") == "Ready"), {}
            )
            current = (str(status.get("phase", "")), str(status.get("progress", "")))
            if current != last and current[0]:
                detail = f" {current[1]}" if current[1] else ""
                say(f"phase {current[0]}{detail}: {ready.get('reason', '')} - {ready.get('message', '')}")
                last = current
            if current[0] == "Ready":
                say(
                    f"ready: endpoint {status.get('endpoint')}, revision {status.get('resolvedRevision')}, "
                    f"{status.get('readyReplicas')} replicas; registered with the orchestrator as "
                    f"{sorted(peers.registered)}"
                )
                return 0
            await kubelet.step()
            await asyncio.sleep(0.2)
        say(f"the capability did not become Ready within {deadline_s:.0f}s (last phase {last[0] or 'none'})")
        return 1
    finally:
        await kube.close()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(operator, timeout=15)
        await operator_kube.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("-f", "--file", type=Path, default=EXAMPLE, help="capability YAML (a byoc example)")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the operator's log")


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose, quiet=not args.verbose)
    try:
        import kmock  # noqa: F401
    except ImportError:
        print("lpbyoc demo needs the API double kmock from the development requirements: make install")
        return 2
    if not args.file.exists():
        print(f"no such capability file: {args.file}")
        return 2
    peers = DemoPeers()
    with LoopThread("api-double") as thread:
        _, api_url = api_double(thread)
        peers_url, peers_port, runner = thread.run(peers.start())
        say(f"API double on {api_url}; stand-in orchestrator and prefetch progress on {peers_url}")
        try:
            return asyncio.run(drive(api_url, peers, peers_url, peers_port, args.file, args.timeout))
        finally:
            thread.run(runner.cleanup())
