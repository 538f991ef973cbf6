"""BYOC `POST /v1/infer` on the TorchScript filter (ai-runner routes are airunner.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from aiohttp import web

from . import imaging
from .backend import RETRY_AFTER_SECONDS, InferenceBackend, triton_error
from .errors import RequestError
from .gate import CapacityExceeded, CapacityGate
from .metrics import AdapterMetrics
from .readiness import Readiness
from .schema import validate_job_input
from .settings import AdapterSettings

T = TypeVar("T")
JSON_TYPE = "application/json"


@dataclass
class Timings:
    decode: float = 0.0
    triton: float = 0.0
    encode: float = 0.0

    def as_ms(self, total: float) -> dict[str, float]:
        return {
            "decode_ms": round(self.decode * 1e3, 3),
            "triton_ms": round(self.triton * 1e3, 3),
            "encode_ms": round(self.encode * 1e3, 3),
            "total_ms": round(total * 1e3, 3),
        }

    def server_timing(self) -> str:
        return f"decode;dur={self.decode * 1e3:.3f}, triton;dur={self.triton * 1e3:.3f}, encode;dur={self.encode * 1e3:.3f}"


def limited(request: web.Request, limit: int) -> web.Request:
    """The request with `limit` enforced while its body is read; 413 at once when Content-Length says so."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(413, f"Request body is {request.content_length} bytes; the limit is {limit}.")
    return request.clone(client_max_size=limit)


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"Request body exceeds the limit of {limit} bytes.")


async def read_body(request: web.Request, limit: int) -> bytes:
    try:
        return await limited(request, limit).read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None


# Image codecs on bigger payloads run in a thread: they release the GIL, and a 4k image would
# otherwise stall the event loop (probes, live frames, other jobs) for a noticeable time.
OFF_LOOP_BYTES = 64 * 1024


async def off_loop(nbytes: int, function: Callable[..., T], *args: Any) -> T:
    if nbytes > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


class JobHandlers:
    def __init__(
        self,
        settings: AdapterSettings,
        backend: InferenceBackend,
        gate: CapacityGate,
        readiness: Readiness,
        metrics: AdapterMetrics,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.gate = gate
        self.readiness = readiness
        self.metrics = metrics

    async def _infer(self, batch: np.ndarray, timings: Timings) -> np.ndarray:
        started = time.perf_counter()
        try:
            return await self.backend.infer(batch)
        except Exception as exc:
            raise triton_error(exc) from None
        finally:
            timings.triton = time.perf_counter() - started

    def _observe(self, route: str, started: float, timings: Timings) -> float:
        total = time.perf_counter() - started
        self.metrics.triton_seconds.labels(route).observe(timings.triton)
        self.metrics.adapter_seconds.labels(route).observe(max(0.0, total - timings.triton))
        return total

    async def _in_slot(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], request: web.Request
    ) -> web.StreamResponse:
        """Run a job in a capacity slot, or refuse at once (503 + Retry-After) when none is free."""
        if self.readiness.draining:
            raise RequestError(503, "The worker is shutting down.", {"Retry-After": RETRY_AFTER_SECONDS})
        try:
            async with self.gate.slot():
                self.metrics.in_flight.inc()
                try:
                    return await handler(request)
                finally:
                    self.metrics.in_flight.dec()
        except CapacityExceeded:
            raise RequestError(
                503,
                f"The worker is at capacity ({self.gate.capacity} concurrent requests); retry later.",
                {"Retry-After": RETRY_AFTER_SECONDS},
            ) from None

    async def infer(self, request: web.Request) -> web.StreamResponse:
        return await self._in_slot(self._infer_job, request)

    async def _infer_job(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        timings = Timings()
        content_type = request.content_type
        if content_type not in (JSON_TYPE, imaging.RAW_TENSOR_TYPE, *imaging.IMAGE_TYPES):
            raise RequestError(
                415,
                f"Unsupported Content-Type '{content_type}'; send application/json, image/png, "
                "image/jpeg or application/octet-stream.",
            )
        body = await read_body(request, self.settings.max_body_bytes)
        output_type = "image/png"
        decode_started = time.perf_counter()
        if content_type == JSON_TYPE:
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(400, f"Body is not valid JSON: {exc}.") from None
            job = validate_job_input(payload)
            if job.get("params", {}).get("format") == "jpeg":
                output_type = "image/jpeg"
            image = imaging.decode_base64(job["image"])
            batch = await off_loop(len(image), imaging.image_bytes_to_batch, image, self.settings.limits)
        elif content_type == imaging.RAW_TENSOR_TYPE:
            shape = imaging.parse_tensor_shape(request.headers.get(imaging.TENSOR_SHAPE_HEADER))
            batch = imaging.decode_raw_tensor(body, shape, self.settings.limits)
        else:
            batch = await off_loop(len(body), imaging.image_bytes_to_batch, body, self.settings.limits)
        timings.decode = time.perf_counter() - decode_started

        output = await self._infer(batch, timings)

        accept = request.headers.get("Accept", "")
        if imaging.RAW_TENSOR_TYPE in accept:
            # A view of Triton's response buffer: no copy of the (possibly large) tensor.
            raw = np.ascontiguousarray(output, dtype="<f4").data.cast("B")
            total = self._observe("infer", started, timings)
            return web.Response(
                body=raw,
                content_type=imaging.RAW_TENSOR_TYPE,
                headers={
                    imaging.TENSOR_SHAPE_HEADER: ",".join(map(str, output.shape)),
                    "Server-Timing": timings.server_timing() + f", total;dur={total * 1e3:.3f}",
                },
            )
        encode_started = time.perf_counter()
        for wanted in imaging.IMAGE_TYPES:
            if wanted in accept:
                output_type = wanted
        encoded, width, height = await off_loop(
            output.nbytes // 4, imaging.batch_to_image_bytes, output, output_type
        )
        timings.encode = time.perf_counter() - encode_started
        total = self._observe("infer", started, timings)
        if any(wanted in accept for wanted in imaging.IMAGE_TYPES):
            return web.Response(
                body=encoded,
                content_type=output_type,
                headers={"Server-Timing": timings.server_timing() + f", total;dur={total * 1e3:.3f}"},
            )
        return web.json_response(
            {
                "image": base64.b64encode(encoded).decode("ascii"),
                "content_type": output_type,
                "width": width,
                "height": height,
                "model_id": self.settings.model_id,
                "capability": self.settings.capability,
                "timings": timings.as_ms(total),
            }
        )
