"""Semantic segmentation (SegFormer and other `*ForSemanticSegmentation` models) through transformers.

The logits are upsampled to the input's HxW (bilinear, align_corners=False) and argmaxed per pixel,
as the image processors' `post_process_semantic_segmentation` does; LABELS holds the int32 class id
of every pixel and `data["labels"]` names the ids present (keys are the ids as strings: JSON objects
have string keys). Upsampling before the argmax costs classesxHxW floats per image, the price of
matching the reference output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import check_snapshot, load_model, load_processor, raise_or_return, run_grouped
from .base import Device, Runtime, TaskRequest, TaskResult, TensorOutput, require_image


class ImageSegmentation(Runtime):
    task = "image-segmentation"
    media_inputs = ("IMAGE",)
    outputs = (TensorOutput("LABELS", "TYPE_INT32", (-1, -1)),)
    batches = True

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        check_snapshot(model_dir, self.task)
        self.processor = load_processor(AutoImageProcessor, model_dir)
        self.model = load_model(AutoModelForSemanticSegmentation, model_dir, device)
        self.id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}

    def run(self, request: TaskRequest) -> TaskResult:
        return raise_or_return(self.run_batch([request])[0])

    def run_batch(self, requests: Sequence[TaskRequest]) -> list[TaskResult | Exception]:
        return run_grouped(requests, self._prepare, self._forward)

    def _prepare(self, request: TaskRequest) -> tuple[tuple[int, ...], tuple[Any, tuple[int, int]]]:
        image = require_image(request)
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return tuple(pixels.shape), (pixels, (int(image.shape[0]), int(image.shape[1])))

    def _forward(self, items: list[tuple[Any, tuple[int, int]]]) -> list[TaskResult]:
        import torch
        import torch.nn.functional as F

        pixels = torch.cat([p for p, _ in items]).to(self.device.name, self.device.dtype)
        results = []
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits
            for scores, size in zip(logits, (s for _, s in items), strict=True):
                upsampled = F.interpolate(
                    scores[None].float(), size=size, mode="bilinear", align_corners=False
                )
                labels = upsampled[0].argmax(dim=0).to(torch.int32).cpu().numpy()
                results.append(TaskResult(data={"labels": self._names(labels)}, tensors={"LABELS": labels}))
        return results

    def _names(self, labels: np.ndarray) -> dict[str, str]:
        return {str(int(i)): self.id2label.get(int(i), f"LABEL_{int(i)}") for i in np.unique(labels)}
