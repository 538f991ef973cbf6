"""Test-only runtimes and backends that stand in for real models.

Each runtime stands in for a model so the adapter's HTTP behaviour (fields, defaults, shapes,
statuses) can be tested fast: outputs are deterministic functions of the inputs and params, with
the shapes and `data` keys the real runtimes return. Real models through Triton are tested elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lpbyoc_worker.inference import TritonUnavailable
from lpbyoc_worker.runtimes.backends import LocalTaskBackend
from lpbyoc_worker.runtimes.base import (
    Device,
    InvalidRequest,
    Runtime,
    TaskRequest,
    TaskResult,
    require_image,
    seed_of,
)

from .harness import Gate

CPU = Device("cpu")


def _images_data(params: Any, count: int, checker: bool) -> dict[str, Any]:
    seed = seed_of(params)
    flagged = checker and bool(params.get("safety_check", True)) and "nsfw" in str(params.get("prompt", ""))
    return {"seeds": [seed + i for i in range(count)], "nsfw": [flagged] * count, "safety_checker": checker}


def _check_loras(params: Any) -> None:
    if params.get("loras"):
        raise InvalidRequest(
            f"LoRA {', '.join(params['loras'])} is not cached for this model: add it to model.loras"
        )


class StandInTextToImage(Runtime):
    """Stands in for a text-to-image diffusion model: image i is filled with (seed + i) % 256."""

    task = "text-to-image"

    def __init__(self, checker: bool = True) -> None:
        super().__init__(Path("."), CPU)
        self.checker = checker
        self.calls: list[dict[str, Any]] = []

    def run(self, request: TaskRequest) -> TaskResult:
        params = request.params
        self.calls.append(dict(params))
        _check_loras(params)
        count = int(params["num_images_per_prompt"])
        h, w = int(params["height"]), int(params["width"])
        seed = seed_of(params)
        images = np.stack([np.full((h, w, 3), (seed + i) % 256, np.uint8) for i in range(count)])
        return TaskResult(data=_images_data(params, count, self.checker), tensors={"IMAGES": images})


class StandInImageToImage(Runtime):
    """Stands in for an image-to-image diffusion model: the inverted input, once per image."""

    task = "image-to-image"

    def __init__(self, checker: bool = False) -> None:
        super().__init__(Path("."), CPU)
        self.checker = checker
        self.calls: list[dict[str, Any]] = []

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        self.calls.append(dict(request.params))
        _check_loras(request.params)
        count = int(request.params.get("num_images_per_prompt", 1))
        images = np.repeat((255 - image)[np.newaxis], count, axis=0)
        return TaskResult(data=_images_data(request.params, count, self.checker), tensors={"IMAGES": images})


class StandInUpscale(Runtime):
    """Stands in for an upscaler: nearest-neighbour 2x."""

    task = "upscale"

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        up = image.repeat(2, axis=0).repeat(2, axis=1)[np.newaxis]
        return TaskResult(data=_images_data(request.params, 1, True), tensors={"IMAGES": up})


class StandInImageToVideo(Runtime):
    """Stands in for a video model: 3 frames of the requested size, brightening."""

    task = "image-to-video"

    def run(self, request: TaskRequest) -> TaskResult:
        require_image(request)
        h, w = int(request.params["height"]), int(request.params["width"])
        frames = np.stack([np.full((h, w, 3), 60 * i, np.uint8) for i in range(3)])
        data = {
            "seed": seed_of(request.params),
            "fps": request.params["fps"],
            "nsfw": False,
            "safety_checker": False,
        }
        return TaskResult(data=data, tensors={"FRAMES": frames})


class StandInCaption(Runtime):
    """Stands in for a captioning model: says the image size and echoes the prompt."""

    task = "image-to-text"

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        prompt = request.params.get("prompt", "")
        return TaskResult(data={"text": f"{prompt}a {image.shape[1]}x{image.shape[0]} picture".strip()})


class StandInSpeech(Runtime):
    """Stands in for a speech model at 16 kHz: says how many seconds it heard."""

    task = "audio-to-text"
    sampling_rate = 16_000

    def run(self, request: TaskRequest) -> TaskResult:
        audio = request.audio
        if audio is None or audio.ndim != 1:
            raise InvalidRequest("this task needs mono audio")
        seconds = round(audio.size / 16_000, 2)
        text = f"{seconds} seconds"
        stamps = request.params.get("return_timestamps", True)
        chunks = [{"timestamp": [0.0, seconds], "text": text}] if stamps else []
        return TaskResult(data={"text": text, "chunks": chunks})


class StandInSam2(Runtime):
    """Stands in for SAM2: 3 masks (1 without multimask), scores ascending so the adapter must sort."""

    task = "segment-anything-2"

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        count = 3 if request.params.get("multimask_output", True) else 1
        h, w = image.shape[:2]
        masks = np.stack([np.full((h, w), float(i), np.float32) for i in range(count)])
        logits = np.stack([np.full((256, 256), float(-i), np.float32) for i in range(count)])
        return TaskResult(
            data={"scores": [0.1 * (i + 1) for i in range(count)]}, tensors={"MASKS": masks, "LOGITS": logits}
        )


class StandInDepth(Runtime):
    """Stands in for a depth model: depth grows left to right."""

    task = "depth-estimation"

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        h, w = image.shape[:2]
        depth = np.tile(np.linspace(1.0, 3.0, w, dtype=np.float32), (h, 1))
        return TaskResult(data={"min": 1.0, "max": 3.0}, tensors={"DEPTH": depth})


class StandInSegmentation(Runtime):
    """Stands in for semantic segmentation: the top half is class 1, the rest class 0."""

    task = "image-segmentation"

    def run(self, request: TaskRequest) -> TaskResult:
        image = require_image(request)
        labels = np.zeros(image.shape[:2], np.int32)
        labels[: image.shape[0] // 2] = 1
        return TaskResult(data={"labels": {0: "background", 1: "sky"}}, tensors={"LABELS": labels})


RUNTIMES: dict[str, type[Runtime]] = {
    cls.task: cls
    for cls in (
        StandInTextToImage,
        StandInImageToImage,
        StandInUpscale,
        StandInImageToVideo,
        StandInCaption,
        StandInSpeech,
        StandInSam2,
        StandInDepth,
        StandInSegmentation,
    )
}


def standin_backend(task: str, **kwargs: Any) -> LocalTaskBackend:
    cls: Any = RUNTIMES[task]
    if task in ("text-to-image", "image-to-image"):
        return LocalTaskBackend(cls(**kwargs))
    return LocalTaskBackend(cls(Path("."), CPU))


class GatedBackend:
    """A stand-in backend whose `run` waits for `release`: holds requests in flight deterministically."""

    def __init__(self, inner: LocalTaskBackend) -> None:
        self.inner = inner
        self.task = inner.task
        self.gate = Gate(arrival_timeout_s=20)
        self.release = self.gate.release
        self.wait_for_waiting = self.gate.wait_for_waiting

    async def run(self, request: TaskRequest) -> TaskResult:
        await self.gate.passage()
        return await self.inner.run(request)

    async def is_model_ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class DownBackend:
    """Triton gone: never ready, every run fails with TritonUnavailable (after `ready` turns false)."""

    def __init__(self, task: str, ready: bool = False) -> None:
        self.task = task
        self.ready = ready

    async def run(self, request: TaskRequest) -> TaskResult:
        raise TritonUnavailable("Triton at 127.0.0.1:8011 unreachable: ConnectionRefusedError")

    async def is_model_ready(self) -> bool:
        return self.ready

    async def close(self) -> None:
        return None
