"""Semantic segmentation (SegFormer and other `*ForSemanticSegmentation` models) through transformers.

The logits are upsampled to the input's HxW (bilinear, align_corners=False) and argmaxed per pixel,
as the image processors' `post_process_semantic_segmentation` does; LABELS holds the int32 class id
of every pixel and `data["labels"]` names the ids present (keys are the ids as strings: JSON objects
have string keys). Upsampling before the argmax costs classesxHxW floats per image, the price of
matching the reference output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import BatchedImageRuntime, check_snapshot, load_model, load_processor
from .base import Device, TaskResult, TensorOutput


class ImageSegmentation(BatchedImageRuntime):
    task = "image-segmentation"
    outputs = (TensorOutput("LABELS", "TYPE_INT32", (-1, -1)),)

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        check_snapshot(model_dir, self.task)
        self.processor = load_processor(AutoImageProcessor, model_dir)
        self.model = load_model(AutoModelForSemanticSegmentation, model_dir, device)
        self.id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}

    def forward(self, pixels: Any, sizes: list[tuple[int, int]]) -> list[TaskResult]:
        import torch
        import torch.nn.functional as F

        results = []
        logits = self.model(pixel_values=pixels).logits
        for scores, size in zip(logits, sizes, strict=True):
            upsampled = F.interpolate(scores[None].float(), size=size, mode="bilinear", align_corners=False)
            labels = upsampled[0].argmax(dim=0).to(torch.int32).cpu().numpy()
            results.append(TaskResult(data={"labels": self._names(labels)}, tensors={"LABELS": labels}))
        return results

    def _names(self, labels: np.ndarray) -> dict[str, str]:
        return {str(int(i)): self.id2label.get(int(i), f"LABEL_{int(i)}") for i in np.unique(labels)}
