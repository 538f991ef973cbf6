"""Depth estimation (Depth Anything, DPT and other `*ForDepthEstimation` models) through transformers.

The model's predicted depth (relative or metric, as the checkpoint was trained) is resized back to the
input's HxW with bicubic interpolation (align_corners=False), exactly what the DPT image processor's
`post_process_depth_estimation` does, and returned as DEPTH (float32). Requests whose preprocessed
images have one shape run as one forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import BatchedImageRuntime, check_snapshot, load_model, load_processor
from .base import Device, TaskResult, TensorOutput


class DepthEstimation(BatchedImageRuntime):
    task = "depth-estimation"
    outputs = (TensorOutput("DEPTH", "TYPE_FP32", (-1, -1)),)

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        check_snapshot(model_dir, self.task)
        self.processor = load_processor(AutoImageProcessor, model_dir)
        self.model = load_model(AutoModelForDepthEstimation, model_dir, device)

    def forward(self, pixels: Any, sizes: list[tuple[int, int]]) -> list[TaskResult]:
        import torch.nn.functional as F

        predicted = self.model(pixel_values=pixels).predicted_depth.float()
        results = []
        for depth, size in zip(predicted, sizes, strict=True):
            resized = F.interpolate(depth[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
            array = resized.cpu().numpy().astype(np.float32)
            results.append(
                TaskResult(
                    data={"min": float(array.min()), "max": float(array.max())}, tensors={"DEPTH": array}
                )
            )
        return results
