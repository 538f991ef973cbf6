"""Live video: each decoded frame goes to Triton and the result is published back.

Two processors: `TritonFrameProcessor` sends frames to the single-tensor TorchScript filter (no
task); `TaskFrameProcessor` runs them through the worker's task runtime and draws its output as a
frame (livetasks.py), with per-task parameters checked before they reach a frame.

pytrickle's client pulls frames through its `frame_skipper` one at a time; `LatestFramePicker`
takes that role so that at most `max_pending` decoded frames wait for the model and older ones are
dropped (and counted) instead of piling up behind a slow model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import torch
from aiohttp import web
from pytrickle.frame_processor import FrameProcessor
from pytrickle.frames import AudioFrame, VideoFrame

from lpbyoc_worker.runtimes.base import TaskRequest

from .backend import InferenceBackend
from .errors import error_response
from .livetasks import LiveParamError, LiveTask, live_task, live_task_message
from .metrics import AdapterMetrics
from .readiness import Readiness

log = logging.getLogger(__name__)
T = TypeVar("T")


async def timed_frame(metrics: AdapterMetrics, started: float, what: str, work: Awaitable[T]) -> T | None:
    """Await one frame's model work, counting it; None when it failed.

    A frame that fails is left out of the output rather than stopping the stream. The model's time
    is observed as Triton time, the rest since `started` as the adapter's own.
    """
    model_started = time.perf_counter()
    try:
        output = await work
    except Exception as exc:
        log.warning("%s failed: %s", what, exc)
        metrics.frames.labels("failed").inc()
        return None
    model_seconds = time.perf_counter() - model_started
    metrics.frames.labels("processed").inc()
    metrics.triton_seconds.labels("live").observe(model_seconds)
    metrics.adapter_seconds.labels("live").observe(time.perf_counter() - started - model_seconds)
    return output


class LatestFramePicker:
    """Drop-in for pytrickle's AdaptiveFrameSkipper: keeps the newest `max_pending` frames."""

    def __init__(self, max_pending: int, metrics: AdapterMetrics) -> None:
        self.max_pending = max_pending
        self.metrics = metrics
        self.dropped = 0

    async def process_video_queue(self, video_queue: asyncio.Queue[Any], timeout: float = 5) -> Any:  # noqa: ASYNC109 (pytrickle's signature)
        # The end-of-stream sentinel is always last in the queue, so draining down to
        # max_pending (>= 1) items never removes it.
        while video_queue.qsize() > self.max_pending:
            frame = video_queue.get_nowait()
            if frame is None:
                return None
            self.dropped += 1
            self.metrics.queue_drops.inc()
            self.metrics.frames.labels("dropped").inc()
        return await asyncio.wait_for(video_queue.get(), timeout=timeout)

    def set_target_fps(self, target_fps: float | None) -> None:
        """Frames are dropped by backlog, not by a target rate."""

    def reset(self) -> None:
        self.dropped = 0


def frame_to_batch(frame_tensor: torch.Tensor) -> np.ndarray:
    """pytrickle's (1, H, W, C) or (H, W, C) float [0, 1] → (1, C, H, W) float32."""
    hwc = frame_tensor[0] if frame_tensor.dim() == 4 else frame_tensor
    return np.ascontiguousarray(hwc.detach().cpu().numpy().transpose(2, 0, 1), dtype=np.float32)[np.newaxis]


def batch_to_frame(batch: np.ndarray) -> torch.Tensor:
    """(1, C, H, W) → (1, H, W, C) float32 clipped to [0, 1], the layout pytrickle encodes."""
    hwc = np.clip(batch[0].transpose(1, 2, 0), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(hwc, dtype=np.float32)).unsqueeze(0)


class LiveFrames(FrameProcessor):
    """What every live processor shares: readiness as "model loaded", the drop-oldest picker, audio
    passed through. Subclasses turn one video frame into its output frame."""

    def __init__(
        self,
        backend: Any,
        readiness: Readiness,
        metrics: AdapterMetrics,
        max_pending: int,
        stream_client: Callable[[], Any],
    ) -> None:
        super().__init__()
        self._backend = backend
        self._readiness = readiness
        self._metrics = metrics
        # Returns the pytrickle client of the running stream (the server creates one per stream).
        self._stream_client = stream_client
        self.picker = LatestFramePicker(max_pending, metrics)
        self.params: dict[str, Any] = {}
        self.processed = 0

    async def load_model(self, **kwargs: Any) -> None:
        # The model lives in Triton: "loaded" means Triton reports it ready.
        await self._readiness.wait_model_ready()

    def attach_picker(self) -> None:
        """A new stream: count drops afresh, and let the stream's client pull frames through the picker."""
        self.picker.reset()
        client = self._stream_client()
        if client is not None:
            client.frame_skipper = self.picker

    async def process_audio_async(self, frame: AudioFrame) -> list[AudioFrame] | None:
        return [frame]


class TritonFrameProcessor(LiveFrames):
    """Frames through the single-tensor TorchScript model (NCHW float32 in and out)."""

    _backend: InferenceBackend

    async def on_stream_start(self, params: dict[str, Any]) -> None:
        self.params = dict(params or {})
        self.attach_picker()

    async def update_params(self, params: dict[str, Any]) -> None:
        self.params.update(params or {})

    async def process_video_async(self, frame: VideoFrame) -> VideoFrame | None:
        started = time.perf_counter()
        batch = frame_to_batch(frame.tensor)
        output = await timed_frame(self._metrics, started, "frame inference", self._backend.infer(batch))
        if output is None:
            return None
        self.processed += 1
        return frame.replace_tensor(batch_to_frame(output))


# ---------------------------------------------------------------------------------------------
# Task runtimes on live video


def frame_to_rgb(frame_tensor: torch.Tensor) -> np.ndarray:
    """pytrickle's (1, H, W, 3) or (H, W, 3) float [0, 1] → HxWx3 uint8 RGB, what runtimes take."""
    hwc = frame_tensor[0] if frame_tensor.dim() == 4 else frame_tensor
    scaled = hwc.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return np.ascontiguousarray(scaled.cpu().numpy())


def rgb_to_frame(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 → (1, H, W, 3) float32 in [0, 1], the layout the TorchScript path publishes."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0).unsqueeze(0)


class TaskFrameProcessor(LiveFrames):
    """Frames through a `TaskBackend` (Triton's task model, or in-process in tests).

    `params` always holds a complete, checked set (the task's defaults under what the client
    sent); each frame reads it once, so an update applies from the next frame on.
    """

    def __init__(
        self,
        backend: Any,  # runtimes.backends.TaskBackend
        live: LiveTask,
        readiness: Readiness,
        metrics: AdapterMetrics,
        max_pending: int,
        stream_client: Callable[[], Any],
    ) -> None:
        super().__init__(backend, readiness, metrics, max_pending, stream_client)
        self.live = live
        self.params = live.validate({})

    def checked(self, update: Any, current: dict[str, Any] | None) -> dict[str, Any]:
        """The HTTP routes refuse bad params with a 400 before they get here; the control channel
        has no one to answer, so there a bad update is logged and the stream keeps its params
        (raising would put pytrickle's server into its ERROR state)."""
        try:
            return self.live.validate(update, current)
        except LiveParamError as exc:
            log.warning("live params refused, keeping the current ones: %s", exc.msg)
            return dict(current) if current is not None else self.live.validate({})

    async def on_stream_start(self, params: dict[str, Any]) -> None:
        self.params = self.checked(params, None)
        self.attach_picker()

    async def update_params(self, params: dict[str, Any]) -> None:
        self.params = self.checked(params, self.params)

    async def render(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """One frame: the runtime's output for `image`, drawn by the task's frame function."""
        request = TaskRequest(params=self.live.runtime_params(params), image=image)
        result = await self._backend.run(request)
        return self.live.render(image, result, params)

    async def process_video_async(self, frame: VideoFrame) -> VideoFrame | None:
        started = time.perf_counter()
        params = self.params
        image = frame_to_rgb(frame.tensor)
        rendered = await timed_frame(
            self._metrics, started, f"live {self.live.task} frame", self.render(image, params)
        )
        if rendered is None:
            return None
        self.processed += 1
        return frame.replace_tensor(rgb_to_frame(rendered))


# ---------------------------------------------------------------------------------------------
# Screening /stream/start and /stream/params on a task worker

START_PATHS = ("/stream/start", "/live-video-to-video")
PARAMS_PATH = "/stream/params"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None; aiohttp keeps the bytes, so pytrickle reads it again."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def params_error(exc: LiveParamError) -> web.Response:
    return error_response(400, exc.msg)


async def screen_start(request: web.Request, live: LiveTask) -> web.Response | None:
    body = await json_object(request)
    if body is None:
        return error_response(400, "the stream start body must be a JSON object")
    try:
        live.validate(body.get("params"))
    except LiveParamError as exc:
        return params_error(exc)
    return None


async def screen_params(request: web.Request, processor: TaskFrameProcessor) -> web.Response | None:
    body = await json_object(request)
    if body is None:
        return error_response(400, "params must be a JSON object")
    try:
        processor.live.validate(body, processor.params)
    except LiveParamError as exc:
        return params_error(exc)
    return None


def live_request_middleware(task: str | None, processor: Any) -> Callable[..., Any]:
    """In front of pytrickle's stream routes on a task worker: a task without a live form is
    refused at start, and a bad params body answers 400 naming the field. pytrickle itself
    would start the stream anyway, and answer a failed params update with 500 (or not at all:
    `update_params` errors are only logged)."""
    live = live_task(task)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if task is None or request.method != "POST":
            return await handler(request)
        problem: web.Response | None = None
        if request.path in START_PATHS:
            if live is None:
                return error_response(400, live_task_message(task))
            problem = await screen_start(request, live)
        elif request.path == PARAMS_PATH and isinstance(processor, TaskFrameProcessor):
            problem = await screen_params(request, processor)
        return problem if problem is not None else await handler(request)

    return middleware
