"""The contract every runtime keeps: what a request carries, what a result holds, how it loads.

Media travel as arrays so Triton can carry them as tensors: images as HxWx3 uint8 RGB, audio as
float32 mono samples at the runtime's sampling rate. Everything else (prompt, seed, strength, ...)
is the JSON object `params`, already validated by the adapter and checked again here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# Bounds the CPU threads one runtime instance uses (torch otherwise takes every core per instance).
CPU_THREADS_ENV = "LPBYOC_CPU_THREADS"
MAX_SEED = 2**32 - 1


class RuntimeError_(Exception):
    """Base of the errors a runtime raises on purpose."""


class IncompatibleModel(RuntimeError_):
    """The snapshot cannot serve the task; the message names the file or class and the fix."""


class InvalidRequest(RuntimeError_, ValueError):
    """The request's parameters or media do not fit the task or the model (the client's fault: 400)."""


@dataclass(frozen=True)
class TaskRequest:
    params: Mapping[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = None  # HxWx3 uint8 RGB
    audio: np.ndarray | None = None  # float32 mono at the runtime's sampling rate


@dataclass
class TaskResult:
    """`data` is JSON-able (seeds, nsfw flags, text, chunks, scores); `tensors` by output name."""

    data: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Device:
    """Where a runtime runs: fp16 on CUDA, fp32 on the CPU."""

    name: str  # "cpu" or "cuda:N"

    @property
    def is_cuda(self) -> bool:
        return self.name.startswith("cuda")

    @property
    def dtype(self) -> Any:
        import torch

        return torch.float16 if self.is_cuda else torch.float32


def pick_device(kind: str = "auto", device_id: int = 0) -> Device:
    """`kind` is Triton's instance kind ("GPU"/"CPU") or "auto" (a GPU when torch sees one).

    A GPU instance without CUDA fails the load: a GPU capability silently on the CPU is worse.
    """
    import torch

    if kind.upper() == "GPU" and not torch.cuda.is_available():
        raise IncompatibleModel(
            f"instance kind GPU, but torch {torch.__version__} sees no CUDA device "
            "(a CPU build of torch, or no GPU assigned to the container)"
        )
    if kind.upper() == "GPU" or (kind == "auto" and torch.cuda.is_available()):
        return Device(f"cuda:{device_id}")
    return Device("cpu")


def bound_cpu_threads(environ: Mapping[str, str] | None = None) -> int:
    """Apply LPBYOC_CPU_THREADS (default: all cores) to torch; returns the count in force."""
    import torch

    env = os.environ if environ is None else environ
    wanted = env.get(CPU_THREADS_ENV, "")
    threads = int(wanted) if wanted.isdigit() and int(wanted) > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def seed_of(params: Mapping[str, Any]) -> int:
    """The request's seed: the adapter always sets one (random when the client did not)."""
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return seed


def require_image(request: TaskRequest) -> np.ndarray:
    image = request.image
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = None if image is None else list(image.shape)
        raise InvalidRequest(f"this task needs an HxWx3 uint8 RGB image, got {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidRequest("the image is empty")
    return image


@dataclass(frozen=True)
class TensorOutput:
    """One tensor a task returns besides RESULT: its Triton name, data type and dims (-1 = any)."""

    name: str
    data_type: str  # Triton config type: TYPE_UINT8, TYPE_FP32, ...
    dims: tuple[int, ...]


class Runtime(ABC):
    """One task served from one snapshot. Subclasses load in `__init__` and stay resident."""

    task: ClassVar[str]
    # Media inputs beside PARAMS: "IMAGE" and/or "AUDIO".
    media_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[TensorOutput, ...]] = ()
    # True where same-shaped requests can run as one forward pass (Triton's dynamic batcher joins them).
    batches: ClassVar[bool] = False
    # Audio runtimes: samples per second the AUDIO input must be at.
    sampling_rate: ClassVar[int | None] = None

    def __init__(self, model_dir: Path, device: Device) -> None:
        self.model_dir = model_dir
        self.device = device

    @abstractmethod
    def run(self, request: TaskRequest) -> TaskResult:
        """One request; raises InvalidRequest for what the client must fix."""

    def run_batch(self, requests: Sequence[TaskRequest]) -> list[TaskResult | Exception]:
        """Several requests (Triton's batcher joined them); a failed one does not fail the others."""
        results: list[TaskResult | Exception] = []
        for request in requests:
            try:
                results.append(self.run(request))
            except InvalidRequest as exc:
                results.append(exc)
        return results
