"""Loading and request helpers the transformers runtimes share.

Every runtime first checks the snapshot with `detect` (the same rules the prefetcher and the operator
apply), so a wrong architecture or a missing processor/tokenizer file fails the load with one message
naming the class or file and the fix, before transformers raises something vaguer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import detect
from .base import Device, IncompatibleModel, InvalidRequest, Runtime, TaskRequest, TaskResult, require_image

T = TypeVar("T")


def check_snapshot(model_dir: Path, task: str) -> detect.SnapshotInfo:
    """Raise IncompatibleModel unless `model_dir` is a transformers snapshot that serves `task`."""
    info = detect.inspect_snapshot(model_dir)
    if info.format != detect.TRANSFORMERS:
        raise IncompatibleModel(
            f"task {task} needs a transformers snapshot (config.json with architectures) in {model_dir}; "
            f"this one is {info.format}"
        )
    detect.check_serves(info, task)
    return info


def load_model(model_cls: Any, model_dir: Path, device: Device, **kwargs: Any) -> Any:
    """`from_pretrained` offline in the device's dtype, moved to the device, in eval mode."""
    try:
        model = model_cls.from_pretrained(model_dir, local_files_only=True, dtype=device.dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise IncompatibleModel(
            f"{getattr(model_cls, '__name__', model_cls)} cannot load {model_dir}: {exc}"
        ) from exc
    return model.to(device.name).eval()


def load_processor(loader: Any, model_dir: Path) -> Any:
    """An image processor / processor from the snapshot's files (either layout), offline."""
    try:
        return loader.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IncompatibleModel(
            f"{getattr(loader, '__name__', loader)} cannot load the processor files in {model_dir} "
            f"({', '.join(detect.PREPROCESSOR_FILES)}): {exc}"
        ) from exc


def image_processor_config(model_dir: Path) -> dict[str, Any]:
    """The image processor's settings: flat preprocessor_config.json (Hub) or processor_config.json's `image_processor`."""
    for name in detect.PREPROCESSOR_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise IncompatibleModel(f"{path} is not valid JSON: {exc}") from exc
        nested = data.get("image_processor") if isinstance(data, dict) else None
        config = nested if isinstance(nested, dict) else data
        if isinstance(config, dict) and "size" in config:
            return config
    raise IncompatibleModel(
        f"{model_dir} has no preprocessor_config.json (or processor_config.json with an image_processor "
        "holding its size): include it in model.allowPatterns"
    )


def flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean parameter; multipart clients send "true"/"false" strings, so those count too."""
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidRequest(f"{name} must be true or false, got {value!r}")


def int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def json_param(params: Mapping[str, Any], name: str) -> Any:
    """A structured parameter (points, box, mask); ai-runner's form fields carry them as JSON strings."""
    value = params.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidRequest(f"{name} is not valid JSON: {exc}") from exc
    return value


def raise_or_return(result: TaskResult | Exception) -> TaskResult:
    if isinstance(result, Exception):
        raise result
    return result


def run_grouped(
    requests: Sequence[TaskRequest],
    prepare: Callable[[TaskRequest], tuple[Hashable, T]],
    forward: Callable[[list[T]], list[TaskResult]],
) -> list[TaskResult | Exception]:
    """Prepare each request (InvalidRequest stays with its request), then one forward pass per shape group.

    `prepare` returns a key (the model input's shape) and the prepared item; items of one key stack
    into one batch, so Triton's batcher joining same-shaped requests gives one forward pass.
    """
    results: list[TaskResult | Exception | None] = [None] * len(requests)
    groups: dict[Hashable, list[tuple[int, T]]] = {}
    for index, request in enumerate(requests):
        try:
            key, item = prepare(request)
        except InvalidRequest as exc:
            results[index] = exc
            continue
        groups.setdefault(key, []).append((index, item))
    for members in groups.values():
        outputs = forward([item for _, item in members])
        for (index, _), output in zip(members, outputs, strict=True):
            results[index] = output
    return [r for r in results if r is not None]


# A preprocessed image and the input's (height, width), which the outputs are resized back to.
PreparedImage = tuple[Any, tuple[int, int]]


class BatchedImageRuntime(Runtime):
    """Image in, per-pixel map out: same-shaped requests run as one forward pass.

    `self.processor` preprocesses; subclasses turn a stacked batch into one result per image.
    """

    media_inputs = ("IMAGE",)
    batches = True
    processor: Any

    def run(self, request: TaskRequest) -> TaskResult:
        return raise_or_return(self.run_batch([request])[0])

    def run_batch(self, requests: Sequence[TaskRequest]) -> list[TaskResult | Exception]:
        return run_grouped(requests, self._prepare, self._forward_batch)

    def _prepare(self, request: TaskRequest) -> tuple[tuple[int, ...], PreparedImage]:
        image = require_image(request)
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return tuple(pixels.shape), (pixels, (int(image.shape[0]), int(image.shape[1])))

    def _forward_batch(self, items: list[PreparedImage]) -> list[TaskResult]:
        import torch

        pixels = torch.cat([p for p, _ in items]).to(self.device.name, self.device.dtype)
        with torch.inference_mode():
            return self.forward(pixels, [size for _, size in items])

    def forward(self, pixels: Any, sizes: list[tuple[int, int]]) -> list[TaskResult]:
        """One result per image of the batch, its maps at the matching input size."""
        raise NotImplementedError
