"""Depth estimation (Depth Anything, DPT and other `*ForDepthEstimation` models) through transformers.

The model's predicted depth (relative or metric, as the checkpoint was trained) is resized back to the
input's HxW with bicubic interpolation (align_corners=False), exactly what the DPT image processor's
`post_process_depth_estimation` does, and returned as DEPTH (float32). Requests whose preprocessed
images have one shape run as one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import check_snapshot, load_model, load_processor, raise_or_return, run_grouped
from .base import Device, Runtime, TaskRequest, TaskResult, TensorOutput, require_image


class DepthEstimation(Runtime):
    task = "depth-estimation"
    media_inputs = ("IMAGE",)
    outputs = (TensorOutput("DEPTH", "TYPE_FP32", (-1, -1)),)
    batches = True

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        check_snapshot(model_dir, self.task)
        self.processor = load_processor(AutoImageProcessor, model_dir)
        self.model = load_model(AutoModelForDepthEstimation, model_dir, device)

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
        with torch.inference_mode():
            predicted = self.model(pixel_values=pixels).predicted_depth.float()
        results = []
        for depth, size in zip(predicted, (s for _, s in items), strict=True):
            resized = F.interpolate(depth[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
            array = resized.cpu().numpy().astype(np.float32)
            results.append(
                TaskResult(
                    data={"min": float(array.min()), "max": float(array.max())}, tensors={"DEPTH": array}
                )
            )
        return results
