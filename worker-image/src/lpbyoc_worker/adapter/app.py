"""The adapter: one aiohttp app (pytrickle's StreamServer) with the job, probe and metrics routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from pytrickle.server import StreamServer

from .backend import RETRY_AFTER_SECONDS, InferenceBackend
from .errors import RequestError, error_response
from .gate import CapacityGate
from .jobs import JobHandlers
from .live import TritonFrameProcessor
from .metrics import CONTENT_TYPE, AdapterMetrics
from .readiness import Readiness
from .schema import JOB_PATH, published_schema
from .settings import AdapterSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that do work for the orchestrator; with a token configured they need it.
PROTECTED_PREFIXES = (JOB_PATH, "/image-to-image", "/stream/", "/live-video-to-video")
UNAUTHORIZED_MSG = "Invalid bearer token."
STREAM_START_PATHS = ("/stream/start", "/live-video-to-video")


class LiveRunner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def state(self) -> dict[str, Any]: ...


def is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix) for prefix in PROTECTED_PREFIXES)


def bearer_token_ok(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class Adapter:
    def __init__(
        self,
        settings: AdapterSettings,
        backend: InferenceBackend,
        live_runner: LiveRunner | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.live_runner = live_runner
        self.metrics = AdapterMetrics()
        self.gate = CapacityGate(settings.capacity)
        self.readiness = Readiness(backend, settings.ready_poll_seconds, self.metrics)
        self.processor = TritonFrameProcessor(
            backend,
            self.readiness,
            self.metrics,
            settings.max_pending_frames,
            stream_client=lambda: self.stream_server.current_client,
        )
        self.jobs = JobHandlers(settings, backend, self.gate, self.readiness, self.metrics)
        self.stream_server = StreamServer(
            frame_processor=self.processor,
            host=settings.host,
            port=settings.port,
            pipeline=settings.pipeline,
            capability_name=settings.model_id,
            middleware=[self._metrics_middleware, self._error_middleware, self._auth_middleware],
            custom_routes=[
                {"method": "POST", "path": JOB_PATH, "handler": self.jobs.infer},
                {"method": "GET", "path": "/v1/schema", "handler": self._schema},
                {"method": "POST", "path": "/image-to-image", "handler": self.jobs.image_to_image},
                {"method": "GET", "path": "/ready", "handler": self._ready},
                {"method": "GET", "path": "/healthz", "handler": self._healthz},
                {"method": "GET", "path": "/metrics", "handler": self._metrics},
                {"method": "GET", "path": "/registration", "handler": self._registration},
            ],
        )
        self._runner: web.AppRunner | None = None
        self._live_runner_task: asyncio.Task[None] | None = None

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
        if (
            token
            and is_protected(request.path)
            and not bearer_token_ok(request.headers.get("Authorization"), token)
        ):
            # 401 makes the orchestrator drop the capability: only ever for a bad token.
            return error_response(401, UNAUTHORIZED_MSG)
        if self.readiness.draining and request.path in STREAM_START_PATHS:
            return error_response(503, "The worker is shutting down.", {"Retry-After": RETRY_AFTER_SECONDS})
        return await handler(request)

    @web.middleware
    async def _error_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as exc:
            return error_response(exc.status, exc.msg, exc.headers)
        except web.HTTPException:
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

    # Small routes --------------------------------------------------------------------------------
    async def _schema(self, request: web.Request) -> web.Response:
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
