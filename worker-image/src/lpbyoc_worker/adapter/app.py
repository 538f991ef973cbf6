"""The adapter: one aiohttp app (pytrickle's StreamServer) with the job, probe and metrics routes.

Two modes: without a task the backend is the single-tensor TorchScript filter (`InferenceBackend`);
with `settings.task` it is a `TaskBackend` and the ai-runner route of that task is served. Either
way ai-runner's system routes (`/health`, `/version`, `/hardware/*`, with trailing-slash aliases)
are answered here, in front of pytrickle's own versions of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
from aiohttp import web
from pytrickle.server import StreamServer

from lpbyoc_worker import __version__
from lpbyoc_worker.inference import InferenceFailed

from .airunner import PipelineRoutes, unauthorized_response
from .backend import RETRY_AFTER_SECONDS
from .errors import RequestError, error_response
from .filtertask import FilterImageToImage
from .gate import CapacityGate
from .hardware import GpuReader
from .jobs import JobHandlers
from .live import TaskFrameProcessor, TritonFrameProcessor, live_request_middleware
from .livetasks import live_task
from .metrics import CONTENT_TYPE, AdapterMetrics
from .pipelines import PIPELINES, Limits, pipeline_for
from .readiness import Readiness
from .schema import JOB_PATH, published_schema
from .settings import AdapterSettings
from .taskjobs import TaskJobHandlers, task_schema

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that do work for the orchestrator; with a token configured they need it.
PROTECTED_PREFIXES = (
    JOB_PATH,
    *(pipeline.path for pipeline in PIPELINES.values()),
    "/stream/",
    "/live-video-to-video",
)
UNAUTHORIZED_MSG = "Invalid bearer token."
STREAM_START_PATHS = ("/stream/start", "/live-video-to-video")
SYSTEM_ROUTES = {
    "/health": "health_body",
    "/version": "version_body",
    "/hardware/info": "hardware_info_body",
    "/hardware/stats": "hardware_stats_body",
}


class LiveRunner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def state(self) -> dict[str, Any]: ...


class _NoLiveFrames:
    """A task without a live form: /stream/start is refused; any frame that arrives fails clearly."""

    def __init__(self, task: str) -> None:
        self.task = task

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        raise InferenceFailed(f"live video is not served by task {self.task}")


def is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix) for prefix in PROTECTED_PREFIXES)


def bearer_token_ok(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class Adapter:
    def __init__(
        self,
        settings: AdapterSettings,
        backend: Any,
        live_runner: LiveRunner | None = None,
        verify: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """`backend` is an InferenceBackend without `settings.task`, a TaskBackend with it."""
        self.settings = settings
        self.backend = backend
        self.live_runner = live_runner
        self.metrics = AdapterMetrics()
        self.gate = CapacityGate(settings.capacity)
        self.gpus = GpuReader()
        self.readiness = Readiness(backend, settings.ready_poll_seconds, self.metrics, verify=verify)
        self.processor = self._frame_processor(settings, backend)
        if settings.task:
            self.jobs: JobHandlers = TaskJobHandlers(
                settings, backend, self.gate, self.readiness, self.metrics, task_backend=backend
            )
            task_backend = backend
        else:
            self.jobs = JobHandlers(settings, backend, self.gate, self.readiness, self.metrics)
            task_backend = FilterImageToImage(backend)
        pipeline = pipeline_for(settings.task or "image-to-image")
        self.pipeline_routes = (
            PipelineRoutes(
                pipeline,
                settings,
                task_backend,
                self.gate,
                self.readiness,
                self.metrics,
                lambda header: bearer_token_ok(header, settings.auth_token or ""),
            )
            if pipeline is not None
            else None
        )
        pipeline_paths = self.pipeline_routes.routes() if self.pipeline_routes else []
        self._pipeline_paths = frozenset(route["path"] for route in pipeline_paths)
        self.stream_server = StreamServer(
            frame_processor=self.processor,
            host=settings.host,
            port=settings.port,
            pipeline=settings.pipeline,
            capability_name=settings.model_id,
            middleware=[
                self._metrics_middleware,
                self._error_middleware,
                self._system_middleware,
                self._auth_middleware,
                live_request_middleware(settings.task, self.processor),
            ],
            custom_routes=[
                {"method": "POST", "path": JOB_PATH, "handler": self.jobs.infer},
                {"method": "GET", "path": "/v1/schema", "handler": self._schema},
                *pipeline_paths,
                {"method": "GET", "path": "/ready", "handler": self._ready},
                {"method": "GET", "path": "/healthz", "handler": self._healthz},
                {"method": "GET", "path": "/metrics", "handler": self._metrics},
                {"method": "GET", "path": "/registration", "handler": self._registration},
            ],
        )
        self._runner: web.AppRunner | None = None
        self._live_runner_task: asyncio.Task[None] | None = None

    def _frame_processor(self, settings: AdapterSettings, backend: Any) -> Any:
        """TorchScript frames without a task; the task's frame function where it has a live form;
        otherwise frames fail clearly (and /stream/start is refused before any arrive)."""
        client = lambda: self.stream_server.current_client  # noqa: E731
        live = live_task(settings.task)
        if live is not None:
            return TaskFrameProcessor(
                backend, live, self.readiness, self.metrics, settings.max_pending_frames, stream_client=client
            )
        frames: Any = _NoLiveFrames(settings.task) if settings.task else backend
        return TritonFrameProcessor(
            frames, self.readiness, self.metrics, settings.max_pending_frames, stream_client=client
        )

    @property
    def app(self) -> web.Application:
        return self.stream_server.app

    @property
    def port(self) -> int:
        assert self._runner is not None, "adapter not started"
        return int(self._runner.addresses[0][1])

    # Lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.readiness.start()
        if self.live_runner is not None:
            self._live_runner_task = asyncio.create_task(self._start_live_runner_when_ready())
        self._runner = await self.stream_server.start_server()
        log.info("adapter listening on %s:%s", self.settings.host, self.port)

    async def drain(self) -> bool:
        """Refuse new work (readiness 503), wait for in-flight jobs; True when they all finished."""
        self.readiness.draining = True
        # Unregister first, so the orchestrator stops routing new sessions here at once.
        await self._stop_live_runner()
        finished = await self.gate.wait_idle(within=self.settings.drain_seconds)
        if not finished:
            log.warning("drain deadline passed with %d job(s) in flight", self.gate.in_flight)
        return finished

    async def _start_live_runner_when_ready(self) -> None:
        # A heartbeat says "ready": the orchestrator would route sessions to a worker without its model.
        await self.readiness.wait_model_ready()
        assert self.live_runner is not None
        await self.live_runner.start()

    async def _stop_live_runner(self) -> None:
        if self._live_runner_task is not None:
            self._live_runner_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._live_runner_task
            self._live_runner_task = None
        if self.live_runner is not None:
            await self.live_runner.stop()

    async def close(self) -> None:
        await self.stream_server.stop()
        await self._stop_live_runner()
        await self.readiness.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.backend.close()

    # Middleware ----------------------------------------------------------------------------------
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.settings.auth_token
        if request.path in self._pipeline_paths:
            # ai-runner validates the request before the token: the route checks it itself.
            return await handler(request)
        if (
            token
            and is_protected(request.path)
            and not bearer_token_ok(request.headers.get("Authorization"), token)
        ):
            # 401 makes the orchestrator drop the capability: only ever for a bad token.
            return unauthorized_response()
        if self.readiness.draining and request.path in STREAM_START_PATHS:
            return error_response(503, "The worker is shutting down.", {"Retry-After": RETRY_AFTER_SECONDS})
        return await handler(request)

    @web.middleware
    async def _error_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as exc:
            return error_response(exc.status, exc.msg, exc.headers)
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                # JSON like every other answer (FastAPI answers these as JSON too).
                return error_response(exc.status, exc.reason or "Not Found", dict(exc.headers))
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "Internal error.")

    @web.middleware
    async def _metrics_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.metrics.requests.labels(route, str(exc.status)).inc()
            raise
        self.metrics.requests.labels(route, str(response.status)).inc()
        return response

    @web.middleware
    async def _system_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """ai-runner's /health, /version and /hardware/* (and their trailing-slash aliases)."""
        route = SYSTEM_ROUTES.get(request.path.rstrip("/") or "/") if request.method == "GET" else None
        if route is None:
            return await handler(request)
        return web.json_response(getattr(self, route)())

    def busy(self) -> bool:
        client = self.stream_server.current_client
        streaming = bool(client is not None and getattr(client, "running", False))
        return self.gate.busy or streaming

    def health_body(self) -> dict[str, Any]:
        return {"status": self.readiness.health(self.busy())}

    def version_body(self) -> dict[str, Any]:
        return {
            "pipeline": self.settings.pipeline,
            "model_id": self.settings.model_id,
            "version": __version__,
        }

    def hardware_info_body(self) -> dict[str, Any]:
        return {
            "pipeline": self.settings.pipeline,
            "model_id": self.settings.model_id,
            "gpu_info": self.gpus.info(),
        }

    def hardware_stats_body(self) -> dict[str, Any]:
        return {
            "pipeline": self.settings.pipeline,
            "model_id": self.settings.model_id,
            "gpu_stats": self.gpus.stats(),
        }

    # Small routes --------------------------------------------------------------------------------
    async def _schema(self, request: web.Request) -> web.Response:
        if self.settings.task:
            limits = Limits(self.settings.limits.max_side, self.settings.max_images_per_prompt)
            return web.json_response(task_schema(self.settings.task, limits))
        return web.json_response(published_schema())

    async def _ready(self, request: web.Request) -> web.Response:
        if self.readiness.ready:
            return web.json_response({"ready": True})
        return error_response(503, self.readiness.reason())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True, "time": time.time()})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _registration(self, request: web.Request) -> web.Response:
        if self.live_runner is None:
            return error_response(404, "This worker does not register as a live runner.")
        return web.json_response(self.live_runner.state())
