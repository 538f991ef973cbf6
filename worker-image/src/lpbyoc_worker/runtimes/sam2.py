"""Segment Anything 2 (Sam2Model) for one image and point/box/mask prompts, as ai-runner's /segment-anything-2.

Parameters (ai-runner's meaning; lists, or the JSON strings its form fields carry):
- point_coords [[x, y], ...] and point_labels [1|0, ...] (1 foreground, 0 background): both or neither.
- box [x1, y1, x2, y2] (also [[x1, y1, x2, y2]]).
- mask_input: a low-resolution mask from a previous call, 1xhxw (or hxw) at LOGITS' size.
- multimask_output (default true): three candidate masks instead of one.
- return_logits (default true): MASKS un-thresholded; false → MASKS binary (logit > 0 as 0.0/1.0).
- normalize_coords (default true): coordinates in input pixels; false → already in [0, 1] of width/height.

Outputs, as SAM2ImagePredictor.predict returns them: MASKS (N, H, W) float32 at the input resolution
(low-res logits upsampled bilinearly, align_corners=False), LOGITS (N, h, w) the low-res logits
(256x256 for the 1024-px checkpoints), data["scores"] the N predicted IoUs, in the model's order.

Preprocessing is done here (resize to the processor's size with PIL, rescale, normalize with its
mean/std): `Sam2ImageProcessor` only exists on the torchvision backend, which the image lacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import check_snapshot, flag, image_processor_config, json_param, load_model
from .base import (
    Device,
    IncompatibleModel,
    InvalidRequest,
    Runtime,
    TaskRequest,
    TaskResult,
    TensorOutput,
    require_image,
)

MAX_POINTS = 64


class SegmentAnything2(Runtime):
    task = "segment-anything-2"
    media_inputs = ("IMAGE",)
    outputs = (
        TensorOutput("MASKS", "TYPE_FP32", (-1, -1, -1)),
        TensorOutput("LOGITS", "TYPE_FP32", (-1, -1, -1)),
    )

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import Sam2Model

        check_snapshot(model_dir, self.task)
        self.preprocess = Sam2Preprocessor(image_processor_config(model_dir))
        self.model = load_model(Sam2Model, model_dir, device)
        self.mask_input_size = tuple(self.model.prompt_encoder.mask_input_size)

    def run(self, request: TaskRequest) -> TaskResult:
        import torch
        import torch.nn.functional as F

        image = require_image(request)
        height, width = image.shape[:2]
        prompts = self._prompts(request.params, height, width)
        multimask = flag(request.params, "multimask_output", True)
        return_logits = flag(request.params, "return_logits", True)
        pixels = self.preprocess.pixel_values(image).to(self.device.name, self.device.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=pixels, multimask_output=multimask, **prompts)
            low_res = out.pred_masks[0, 0].float()
            masks = F.interpolate(low_res[None], size=(height, width), mode="bilinear", align_corners=False)[
                0
            ]
        if not return_logits:
            masks = (masks > 0.0).float()
        scores = out.iou_scores[0, 0].float().cpu().tolist()
        return TaskResult(
            data={"scores": [float(s) for s in scores]},
            tensors={"MASKS": masks.cpu().numpy(), "LOGITS": low_res.cpu().numpy()},
        )

    def _prompts(self, params: Any, height: int, width: int) -> dict[str, Any]:
        """The model's prompt tensors, coordinates scaled to its input size (what Sam2Processor does)."""
        import torch

        normalize = flag(params, "normalize_coords", True)
        scale = self.preprocess.coordinate_scale(height, width, normalize)
        prompts: dict[str, Any] = {}
        points, labels = parse_points(json_param(params, "point_coords"), json_param(params, "point_labels"))
        if points is not None:
            prompts["input_points"] = torch.tensor(points * scale, dtype=self.device.dtype)[None, None]
            prompts["input_labels"] = torch.tensor(labels, dtype=torch.int64)[None, None]
        box = parse_box(json_param(params, "box"))
        if box is not None:
            prompts["input_boxes"] = torch.tensor(box * np.tile(scale, 2), dtype=self.device.dtype)[
                None, None
            ]
        mask = parse_mask(json_param(params, "mask_input"), self.mask_input_size)
        if mask is not None:
            prompts["input_masks"] = torch.tensor(mask, dtype=self.device.dtype)[None, None]
        return {k: v.to(self.device.name) for k, v in prompts.items()}


class Sam2Preprocessor:
    """Sam2ImageProcessor's resize → rescale → normalize, on PIL (its resample, size, mean and std)."""

    def __init__(self, config: dict[str, Any]) -> None:
        size = config.get("size") or {}
        try:
            self.height, self.width = int(size["height"]), int(size["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IncompatibleModel(
                f"SAM2 image processor size must be {{height, width}}, got {size!r}"
            ) from exc
        self.resample = int(config.get("resample", 2))
        self.rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        self.normalize = bool(config.get("do_normalize", True))
        self.mean = np.asarray(config.get("image_mean", [0.485, 0.456, 0.406]), dtype=np.float32)
        self.std = np.asarray(config.get("image_std", [0.229, 0.224, 0.225]), dtype=np.float32)

    def pixel_values(self, image: np.ndarray) -> Any:
        import torch
        from PIL import Image

        resized = Image.fromarray(image).resize((self.width, self.height), resample=self.resample)
        array = np.asarray(resized, dtype=np.float32) * np.float32(self.rescale)
        if self.normalize:
            array = (array - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]

    def coordinate_scale(self, height: int, width: int, normalize: bool) -> np.ndarray:
        """Factor from request (x, y) to model-input coordinates: pixels (normalize) or [0, 1] fractions."""
        if normalize:
            return np.array([self.width / width, self.height / height], dtype=np.float64)
        return np.array([self.width, self.height], dtype=np.float64)


def _finite_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{name} must be numbers, got {value!r}") from exc
    if not np.all(np.isfinite(array)):
        raise InvalidRequest(f"{name} must be finite numbers")
    return array


def parse_points(coords: Any, labels: Any) -> tuple[np.ndarray | None, list[int] | None]:
    """point_coords (Nx2) and point_labels (N of 0/1), checked against each other."""
    if coords is None and labels is None:
        return None, None
    if coords is None or labels is None:
        raise InvalidRequest("point_coords and point_labels go together: give both or neither")
    points = _finite_array(coords, "point_coords")
    if points.ndim != 2 or points.shape[1] != 2 or not 1 <= points.shape[0] <= MAX_POINTS:
        raise InvalidRequest(
            f"point_coords must be a list of 1..{MAX_POINTS} [x, y] pairs, got shape {list(points.shape)}"
        )
    if not isinstance(labels, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v in (0, 1) for v in labels
    ):
        raise InvalidRequest(
            f"point_labels must be a list of 1 (foreground) or 0 (background), got {labels!r}"
        )
    if len(labels) != points.shape[0]:
        raise InvalidRequest(f"point_labels has {len(labels)} entries for {points.shape[0]} point_coords")
    return points, labels


def parse_box(box: Any) -> np.ndarray | None:
    if box is None:
        return None
    array = _finite_array(box, "box")
    if array.shape == (1, 4):
        array = array[0]
    if array.shape != (4,):
        raise InvalidRequest(f"box must be [x1, y1, x2, y2], got shape {list(array.shape)}")
    if array[2] < array[0] or array[3] < array[1]:
        raise InvalidRequest(f"box must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1, got {array.tolist()}")
    return array


def parse_mask(mask: Any, size: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    array = _finite_array(mask, "mask_input")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != tuple(size):
        expected = "x".join(str(s) for s in size)
        raise InvalidRequest(f"mask_input must be 1x{expected} (the LOGITS size), got {list(array.shape)}")
    return array
