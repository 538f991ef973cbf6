"""ai-runner pipeline routes over a task backend, answering only what go-livepeer can decode.

go-livepeer's generated client reads 200, 400, 401, 422 and 500, each only with a JSON content
type; any other answer becomes a nil response that the orchestrator dereferences (its handler
panics). So every outcome here is one of those five, always JSON:
- 422 FastAPI's list for a request that does not fit the schema (`forms.ValidationFailed`);
- 401 + `WWW-Authenticate: Bearer` for a bad token (checked after validation, as FastAPI does);
- 400 `{"detail": {"msg"}}` for what the client must fix (model_id, media, params, body size);
- 500 `{"detail": {"msg"}}` for the worker's failures (Triton down, queue full or timed out,
  shutting down, model error).
Requests beyond capacity wait in a bounded queue: the orchestrator enforces capacity itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lpbyoc_worker.inference import InferenceFailed, InvalidInput, TritonUnavailable
from lpbyoc_worker.runtimes.backends import TaskBackend
from lpbyoc_worker.runtimes.base import InvalidRequest, TaskRequest, TaskResult

from . import forms, media
from .errors import RequestError, error_response
from .gate import CapacityGate, QueueFull, QueueTimeout
from .metrics import AdapterMetrics
from .pipelines import Limits, Pipeline, safety_header
from .readiness import Readiness
from .settings import AdapterSettings

log = logging.getLogger(__name__)

UNAUTHORIZED_MSG = "Invalid bearer token."
DECODABLE = frozenset({200, 400, 401, 422, 500})
JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
SAFETY_HEADER = "X-Safety-Check"
# Encoding N large PNGs (or parsing big uploads) would stall the event loop: do it in a thread.
OFF_LOOP_BYTES = 64 * 1024


def validation_response(errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"detail": errors}, status=422)


def unauthorized_response() -> web.Response:
    return error_response(401, UNAUTHORIZED_MSG, {"WWW-Authenticate": "Bearer"})


def decodable(exc: RequestError) -> RequestError:
    """The same message under a status go-livepeer decodes: other 4xx → 400, 5xx → 500.

    A 422 needs FastAPI's list shape, which a one-message error does not have: it becomes 400.
    """
    if exc.status in (400, 401, 500):
        return exc
    status = 400 if 400 <= exc.status < 500 else 500
    return RequestError(status, exc.msg)


def backend_error(exc: Exception, pipeline: Pipeline) -> RequestError:
    """A task backend's failure as the client sees it; internals stay in the log."""
    if isinstance(exc, RequestError):
        return decodable(exc)
    if isinstance(exc, InvalidRequest | InvalidInput):
        return RequestError(400, str(exc) or pipeline.failure)
    if isinstance(exc, TritonUnavailable):
        log.warning("Triton unavailable: %s", exc)
        return RequestError(500, f"The inference server is unavailable: {exc}")
    if isinstance(exc, InferenceFailed):
        log.warning("%s inference failed: %s", pipeline.task, exc)
        return RequestError(500, f"{pipeline.failure} {exc}")
    log.error("%s pipeline failed", pipeline.task, exc_info=exc)
    return RequestError(500, pipeline.failure)


class PipelineRoutes:
    """POST `pipeline.path` (and its trailing-slash alias) served by one task backend."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: AdapterSettings,
        backend: TaskBackend,
        gate: CapacityGate,
        readiness: Readiness,
        metrics: AdapterMetrics,
        token_ok: Any,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.backend = backend
        self.gate = gate
        self.readiness = readiness
        self.metrics = metrics
        self._token_ok = token_ok  # (Authorization header or None) -> bool
        self.fields = pipeline.fields(
            Limits(max_side=settings.limits.max_side, max_images_per_prompt=settings.max_images_per_prompt)
        )
        self.safety_unavailable_logged = False

    @property
    def paths(self) -> tuple[str, str]:
        return self.pipeline.path, self.pipeline.path + "/"

    def routes(self) -> list[dict[str, Any]]:
        return [{"method": "POST", "path": path, "handler": self.handle} for path in self.paths]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._handle(request)
        except forms.ValidationFailed as exc:
            return validation_response(exc.errors)
        except RequestError as exc:
            safe = decodable(exc)
            headers = {"WWW-Authenticate": "Bearer"} if safe.status == 401 else None
            return error_response(safe.status, safe.msg, headers)
        except Exception:
            log.exception("unhandled error on %s", request.path)
            return error_response(500, self.pipeline.failure)
        assert response.status in DECODABLE, response.status
        return response

    # Steps ---------------------------------------------------------------------------------------
    async def _read_values(self, request: web.Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise RequestError(400, f"Request body is {request.content_length} bytes; the limit is {limit}.")
        limited = request.clone(client_max_size=limit)
        try:
            if self.pipeline.body == "json":
                return dict(await self._read_json(limited))
            if request.content_type not in FORM_TYPES:
                # FastAPI reads no form from another content type: every required field is missing.
                await limited.read()
                return forms.parse_fields({}, self.fields, "form")
            form = await limited.post()
        except web.HTTPRequestEntityTooLarge:
            raise RequestError(400, f"Request body exceeds the limit of {limit} bytes.") from None
        except (ValueError, HttpProcessingError) as exc:
            # A malformed multipart body (FastAPI's wording); aiohttp raises either kind.
            raise RequestError(400, f"There was an error parsing the body: {exc}") from None
        first: dict[str, Any] = {}
        for key, value in form.items():
            first.setdefault(key, value)
        return forms.parse_fields(first, self.fields, "form")

    async def _read_json(self, request: web.Request) -> Mapping[str, Any]:
        body = await request.read()
        if not body:
            raise forms.missing_body()
        if request.content_type not in JSON_TYPES:
            raise forms.ValidationFailed(
                [
                    forms.error(
                        "model_attributes_type",
                        None,
                        "Input should be a valid dictionary or object to extract fields from",
                        body.decode("utf-8", "replace")[:200],
                    )
                ]
            )
        try:
            payload = json.loads(body)
        except UnicodeDecodeError as exc:
            raise forms.json_decode_failure(exc.start, "invalid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise forms.json_decode_failure(exc.pos, exc.msg) from None
        return forms.parse_fields(forms.json_object_or_fail(payload), self.fields, "json")

    def _authorize(self, request: web.Request) -> None:
        if self.settings.auth_token and not self._token_ok(request.headers.get("Authorization")):
            raise RequestError(401, UNAUTHORIZED_MSG)

    def _check_model_id(self, values: Mapping[str, Any]) -> None:
        model_id = values.get("model_id") or ""
        if model_id and model_id != self.settings.model_id:
            raise RequestError(
                400, f"pipeline configured with {self.settings.model_id} but called with {model_id}."
            )

    async def _media(self, values: Mapping[str, Any]) -> tuple[Any, Any]:
        kind = self.pipeline.media
        if kind is None:
            return None, None
        data = values[kind].file.read()
        if kind == "image":
            image = await _maybe_off_loop(len(data), media.decode_image, data, self.settings.limits)
            return image, None
        audio = await _maybe_off_loop(
            len(data), media.decode_audio, data, media.SPEECH_SAMPLING_RATE, self.settings.max_audio_seconds
        )
        return None, audio

    async def _run(self, task_request: TaskRequest) -> tuple[TaskResult, float]:
        try:
            async with self.gate.queued_slot(self.settings.queue_size, self.settings.queue_timeout):
                self.metrics.in_flight.inc()
                started = time.perf_counter()
                try:
                    return await self.backend.run(task_request), time.perf_counter() - started
                except Exception as exc:
                    raise backend_error(exc, self.pipeline) from None
                finally:
                    self.metrics.in_flight.dec()
        except QueueFull:
            raise RequestError(
                500,
                f"The worker is at capacity ({self.gate.capacity} running, {self.gate.waiting} waiting); "
                "retry later.",
            ) from None
        except QueueTimeout:
            raise RequestError(
                500,
                f"No capacity became free within {self.settings.queue_timeout:g} s "
                f"({self.gate.capacity} concurrent requests); retry later.",
            ) from None

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        values = await self._read_values(request)
        self._authorize(request)
        self._check_model_id(values)
        if self.readiness.draining:
            raise RequestError(500, "The worker is shutting down; retry on another worker.")
        params = self.pipeline.build(values)
        image, audio = await self._media(values)
        result, model_seconds = await self._run(TaskRequest(params=params, image=image, audio=audio))
        size = sum(int(t.nbytes) for t in result.tensors.values())
        body = await _maybe_off_loop(size, self.pipeline.respond, result, values, params)
        headers = {"Server-Timing": f"model;dur={model_seconds * 1e3:.3f}"}
        safety = safety_header(self.pipeline, values, result)
        if safety is not None:
            headers[SAFETY_HEADER] = safety
            if safety == "unavailable" and not self.safety_unavailable_logged:
                self.safety_unavailable_logged = True
                log.warning(
                    "%s: safety_check was requested but the model has no safety checker; "
                    "answering nsfw=false with %s: unavailable",
                    self.pipeline.task,
                    SAFETY_HEADER,
                )
        total = time.perf_counter() - started
        self.metrics.triton_seconds.labels(self.pipeline.path).observe(model_seconds)
        self.metrics.adapter_seconds.labels(self.pipeline.path).observe(max(0.0, total - model_seconds))
        return web.json_response(body, headers=headers)


async def _maybe_off_loop(nbytes: int, function: Any, *args: Any) -> Any:
    if nbytes > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)
