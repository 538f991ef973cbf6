"""Live video: each decoded frame goes to Triton and the result is published back.

pytrickle's client pulls frames through its `frame_skipper` one at a time; `LatestFramePicker`
takes that role so that at most `max_pending` decoded frames wait for the model and older ones are
dropped (and counted) instead of piling up behind a slow model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pytrickle.frame_processor import FrameProcessor
from pytrickle.frames import AudioFrame, VideoFrame

from .backend import InferenceBackend
from .metrics import AdapterMetrics
from .readiness import Readiness

log = logging.getLogger(__name__)


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


class TritonFrameProcessor(FrameProcessor):
    def __init__(
        self,
        backend: InferenceBackend,
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

    async def on_stream_start(self, params: dict[str, Any]) -> None:
        self.params = dict(params or {})
        self.picker.reset()
        client = self._stream_client()
        if client is not None:
            client.frame_skipper = self.picker

    async def update_params(self, params: dict[str, Any]) -> None:
        self.params.update(params or {})

    async def process_video_async(self, frame: VideoFrame) -> VideoFrame | None:
        started = time.perf_counter()
        batch = frame_to_batch(frame.tensor)
        triton_started = time.perf_counter()
        try:
            output = await self._backend.infer(batch)
        except Exception as exc:
            # A frame that fails is left out of the output rather than stopping the stream.
            log.warning("frame inference failed: %s", exc)
            self._metrics.frames.labels("failed").inc()
            return None
        triton_seconds = time.perf_counter() - triton_started
        result = frame.replace_tensor(batch_to_frame(output))
        self.processed += 1
        self._metrics.frames.labels("processed").inc()
        self._metrics.triton_seconds.labels("live").observe(triton_seconds)
        self._metrics.adapter_seconds.labels("live").observe(time.perf_counter() - started - triton_seconds)
        return result

    async def process_audio_async(self, frame: AudioFrame) -> list[AudioFrame] | None:
        return [frame]
