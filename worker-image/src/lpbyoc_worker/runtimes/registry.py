"""The one registry of tasks: task name → the family module and runtime class that serves it.

Modules are imported only when their task is loaded, so the prefetcher and the adapter never pay
for diffusers or transformers imports.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .base import Device, IncompatibleModel, Runtime


@dataclass(frozen=True)
class TaskEntry:
    module: str  # lpbyoc_worker.runtimes.<family>
    runtime: str  # class name in that module
    family: str  # "diffusers" or "transformers"


TASKS: dict[str, TaskEntry] = {
    "text-to-image": TaskEntry("lpbyoc_worker.runtimes.diffusion", "TextToImage", "diffusers"),
    "image-to-image": TaskEntry("lpbyoc_worker.runtimes.diffusion", "ImageToImage", "diffusers"),
    "upscale": TaskEntry("lpbyoc_worker.runtimes.diffusion", "Upscale", "diffusers"),
    "image-to-video": TaskEntry("lpbyoc_worker.runtimes.diffusion", "ImageToVideo", "diffusers"),
    "depth-estimation": TaskEntry("lpbyoc_worker.runtimes.depth", "DepthEstimation", "transformers"),
    "image-segmentation": TaskEntry(
        "lpbyoc_worker.runtimes.segmentation", "ImageSegmentation", "transformers"
    ),
    "segment-anything-2": TaskEntry("lpbyoc_worker.runtimes.sam2", "SegmentAnything2", "transformers"),
    "image-to-text": TaskEntry("lpbyoc_worker.runtimes.captioning", "ImageToText", "transformers"),
    "audio-to-text": TaskEntry("lpbyoc_worker.runtimes.speech", "AudioToText", "transformers"),
}


def runtime_class(task: str) -> type[Runtime]:
    entry = TASKS.get(task)
    if entry is None:
        raise IncompatibleModel(f"no runtime for task {task!r}; tasks with a runtime: {', '.join(TASKS)}")
    cls = getattr(importlib.import_module(entry.module), entry.runtime)
    assert issubclass(cls, Runtime) and cls.task == task, f"{entry} does not serve {task}"
    return cls


def load_runtime(task: str, model_dir: Path, device: Device) -> Runtime:
    """Load the snapshot for `task` (offline: every file comes from `model_dir`)."""
    return runtime_class(task)(model_dir, device)
