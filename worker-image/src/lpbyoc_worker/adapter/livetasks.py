"""Live video through a task runtime: per-task parameters and what one frame becomes.

A worker started with `--task` runs each live frame through the same runtime as its batch route.
What comes back is not always a picture, so each live task turns the runtime's output for one
frame into an RGB frame of the input's size:

| task               | runtime output          | live frame                                        |
|--------------------|-------------------------|---------------------------------------------------|
| image-to-image     | IMAGES (N x H' x W' x 3) | the first image, resized back to the input's size |
| depth-estimation   | DEPTH (H x W float32)    | depth normalised per frame, through a colour map  |
| image-segmentation | LABELS (H x W int32)     | a colour per label id, alpha-blended over the frame |

Parameters are checked here, before they reach a frame: a stream must never run on a value the
runtime would refuse on every frame. Plain checks rather than pydantic, so that each message names
the field and says what it takes, in the words the batch routes use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lpbyoc_worker.runtimes.base import MAX_SEED, TaskResult

LIVE_TASKS = ("image-to-image", "depth-estimation", "image-segmentation")

# Keys pytrickle itself reads from the start and params bodies (decoder size, frame rate, overlay).
STREAM_KEYS = ("width", "height", "max_framerate", "detect_out_resolution", "show_loading")
MAX_PROMPT_CHARS = 2000
MAX_LIVE_STEPS = 4
MAX_LIVE_GUIDANCE = 20.0
MAX_STREAM_SIDE = 4096
MAX_FRAMERATE = 60  # pytrickle's own limit
# A fixed seed keeps consecutive frames alike (a new seed per frame flickers); clients may set one.
LIVE_SEED = 42


class LiveParamError(ValueError):
    """A live parameter the stream cannot run with; `field` names it for the client."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(msg)
        self.field = field
        self.msg = msg


def live_task_message(task: str) -> str:
    return (
        f"task {task} cannot run on live video; the live tasks are {', '.join(LIVE_TASKS)} "
        "(start the worker with one of them for /stream/start and /live-video-to-video)"
    )


# ---------------------------------------------------------------------------------------------
# Checks: each takes (field, value) and returns the value to use, or raises LiveParamError.

Check = Callable[[str, Any], Any]


def number(low: float, high: float, *, low_open: bool = False) -> Check:
    def check(field: str, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and (low < value if low_open else low <= value) and value <= high):
            bounds = f"{'(' if low_open else '['}{low}, {high}]"
            raise LiveParamError(field, f"{field} must be a number in {bounds}, got {value!r}")
        return float(value)

    return check


def integer(low: int, high: int) -> Check:
    def check(field: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON writers may send 2.0
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise LiveParamError(field, f"{field} must be an integer in {low}..{high}, got {value!r}")
        return value

    return check


def text(max_chars: int) -> Check:
    def check(field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise LiveParamError(field, f"{field} must be a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise LiveParamError(field, f"{field} must be at most {max_chars} characters, got {len(value)}")
        return value

    return check


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise LiveParamError(field, f"{field} must be true or false, got {value!r}")
    return value


def choice(names: tuple[str, ...]) -> Check:
    def check(field: str, value: Any) -> str:
        if value not in names:
            raise LiveParamError(field, f"{field} must be one of {', '.join(names)}, got {value!r}")
        return str(value)

    return check


def boolish(field: str, value: Any) -> Any:
    """pytrickle reads these as booleans or "true"/"false" strings; anything else is a mistake."""
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "1", "0")):
        return value
    raise LiveParamError(field, f"{field} must be true or false, got {value!r}")


STREAM_CHECKS: dict[str, Check] = {
    "width": integer(1, MAX_STREAM_SIDE),
    "height": integer(1, MAX_STREAM_SIDE),
    "max_framerate": integer(1, MAX_FRAMERATE),
    "detect_out_resolution": boolish,
    "show_loading": boolish,
}


def check_size_pair(update: Mapping[str, Any]) -> None:
    """pytrickle resizes the decoder only with both sides, and refuses one alone (with a 500 on
    /stream/params): name the missing one instead."""
    given = [key for key in ("width", "height") if key in update]
    if len(given) == 1:
        missing = "height" if given[0] == "width" else "width"
        raise LiveParamError(missing, f"{missing} must be given together with {given[0]}")


# ---------------------------------------------------------------------------------------------
# Colour maps and the segmentation palette


def _turbo(x: np.ndarray) -> np.ndarray:
    """Google's Turbo through its published degree-5 polynomial fit (Mikhailov, 2019)."""
    r = 0.13572138 + x * (
        4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943)))
    )
    g = 0.09140261 + x * (
        2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604)))
    )
    b = 0.10667330 + x * (
        12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973)))
    )
    return np.stack([r, g, b], axis=-1) * 255.0


# Eight evenly spaced samples of matplotlib's perceptual maps, interpolated linearly in between:
# close enough to read the same, without a matplotlib dependency.
_ANCHORS = {
    "inferno": [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                (250, 193, 39), (252, 255, 164)],
    "viridis": [(68, 1, 84), (70, 50, 126), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 193, 109),
                (160, 218, 57), (253, 231, 37)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}  # fmt: skip
COLORMAPS = ("turbo", "inferno", "viridis", "gray")


def _from_anchors(x: np.ndarray, anchors: list[tuple[int, int, int]]) -> np.ndarray:
    stops = np.linspace(0.0, 1.0, len(anchors))
    table = np.asarray(anchors, dtype=np.float64)
    return np.stack([np.interp(x, stops, table[:, channel]) for channel in range(3)], axis=-1)


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 table of colour map `name`: entry 0 for the nearest-to-min depth."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; one of {', '.join(COLORMAPS)}")
    x = np.linspace(0.0, 1.0, 256)
    values = _turbo(x) if name == "turbo" else _from_anchors(x, _ANCHORS[name])
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


_LUTS = {name: colormap_lut(name) for name in COLORMAPS}


def depth_indices(depth: np.ndarray, invert: bool = False) -> np.ndarray:
    """Depth → 0..255 per frame (min → 0, max → 255), so every frame uses the whole colour range.

    Non-finite values count as the minimum; a flat map (max == min) is all 0.
    """
    values = np.asarray(depth, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    span = high - low
    scaled = (values - low) / span if span > 0 else np.zeros_like(values)
    indices = np.round(np.where(finite, scaled, 0.0) * 255.0).astype(np.uint8)
    return 255 - indices if invert else indices


def colorize_depth(depth: np.ndarray, colormap: str = "turbo", invert: bool = False) -> np.ndarray:
    """An HxW depth map as an HxWx3 uint8 RGB picture through `colormap`."""
    return _LUTS[colormap][depth_indices(depth, invert)]


def label_palette(ids: np.ndarray) -> np.ndarray:
    """A fixed colour per label id (…, 3 uint8): the PASCAL VOC bit-interleaved palette.

    Each id's bits are spread over R, G and B from the top bit down, so the colour depends on the
    id alone (the same across frames, streams and models) and distinct ids below 2**24 never share
    one. Id 0 (usually background) is black; negative ids are treated as 0.
    """
    remaining = np.clip(np.asarray(ids, dtype=np.int64), 0, None)
    colour = np.zeros((*remaining.shape, 3), np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colour[..., channel] |= ((remaining >> channel) & 1) << shift
        remaining = remaining >> 3
    return colour.astype(np.uint8)


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`image` (HxWx3 uint8) with each pixel's label colour blended in at `alpha` (0: image only)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    colours = label_palette(ids)[inverse.reshape(labels.shape)]
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def fit_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB uint8 image at exactly height x width (bicubic), the size the stream was sent at."""
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def fit_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """A label map at height x width (nearest: ids must not be blended into other ids)."""
    if labels.shape[:2] == (height, width):
        return labels
    resized = Image.fromarray(np.ascontiguousarray(labels, dtype=np.int32)).resize(
        (width, height), Image.Resampling.NEAREST
    )
    return np.asarray(resized, dtype=np.int32)


def fit_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    if depth.shape[:2] == (height, width):
        return depth
    resized = Image.fromarray(np.ascontiguousarray(depth, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# The live tasks


def _tensor(result: TaskResult, name: str, task: str) -> np.ndarray:
    if name not in result.tensors:
        raise ValueError(f"{task} returned no {name} tensor (got {', '.join(result.tensors) or 'none'})")
    return np.asarray(result.tensors[name])


def render_image_to_image(image: np.ndarray, result: TaskResult, params: Mapping[str, Any]) -> np.ndarray:
    """The first generated image, at the input's size (the pipeline rounds sides down to x8)."""
    images = _tensor(result, "IMAGES", "image-to-image")
    return fit_rgb(images[0], image.shape[0], image.shape[1])


def render_depth(image: np.ndarray, result: TaskResult, params: Mapping[str, Any]) -> np.ndarray:
    depth = fit_depth(_tensor(result, "DEPTH", "depth-estimation"), image.shape[0], image.shape[1])
    return colorize_depth(depth, params["colormap"], params["invert"])


def render_segmentation(image: np.ndarray, result: TaskResult, params: Mapping[str, Any]) -> np.ndarray:
    labels = fit_labels(_tensor(result, "LABELS", "image-segmentation"), image.shape[0], image.shape[1])
    return overlay_labels(image, labels, params["alpha"])


def check_steps_times_strength(params: Mapping[str, Any]) -> None:
    """The runtime runs int(steps x strength) denoising steps and refuses zero: say so up front."""
    steps, strength = params["num_inference_steps"], params["strength"]
    if int(steps * strength) < 1:
        raise LiveParamError(
            "num_inference_steps",
            f"num_inference_steps x strength must be at least 1 (the steps that actually run), "
            f"got {steps} x {strength}",
        )


@dataclass(frozen=True)
class LiveTask:
    """One task's live parameters (defaults and checks) and its frame function.

    `runtime_keys` are sent to the runtime with each frame; the other keys only shape the output
    frame here (colour map, overlay alpha).
    """

    task: str
    defaults: Mapping[str, Any]
    checks: Mapping[str, Check]
    runtime_keys: tuple[str, ...]
    render: Callable[[np.ndarray, TaskResult, Mapping[str, Any]], np.ndarray]
    cross_check: Callable[[Mapping[str, Any]], None] | None = None

    def validate(self, update: Any, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`current` (the defaults when None) with `update` applied; raises LiveParamError.

        Unknown keys are refused rather than ignored: a misspelt `promt` would otherwise leave the
        stream unchanged with a 200. A null value puts the key back to its default.
        """
        if update is None:
            update = {}
        if not isinstance(update, Mapping):
            raise LiveParamError("params", f"params must be a JSON object, got {type(update).__name__}")
        check_size_pair(update)
        merged = dict(self.defaults if current is None else current)
        for key, value in update.items():
            check = self.checks.get(key) or STREAM_CHECKS.get(key)
            if check is None:
                raise LiveParamError(
                    str(key),
                    f"{key} is not a live parameter of {self.task}; it takes: "
                    f"{', '.join(sorted({*self.checks, *STREAM_KEYS}))}",
                )
            if value is None:
                merged.pop(key, None)
                if key in self.defaults:
                    merged[key] = self.defaults[key]
                continue
            merged[key] = check(str(key), value)
        if self.cross_check is not None:
            self.cross_check(merged)
        return merged

    def runtime_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {key: params[key] for key in self.runtime_keys if key in params}


IMAGE_TO_IMAGE = LiveTask(
    task="image-to-image",
    # Two steps at strength 0.5 run one denoising step per frame (int(2 x 0.5)); no classifier-free
    # guidance (turbo models are trained without it, and it doubles the UNet's work); an empty
    # prompt until the client sends one; no safety checker per frame unless asked for.
    defaults={
        "prompt": "",
        "negative_prompt": "",
        "strength": 0.5,
        "guidance_scale": 0.0,
        "num_inference_steps": 2,
        "seed": LIVE_SEED,
        "safety_check": False,
    },
    checks={
        "prompt": text(MAX_PROMPT_CHARS),
        "negative_prompt": text(MAX_PROMPT_CHARS),
        "strength": number(0.0, 1.0, low_open=True),
        "guidance_scale": number(0.0, MAX_LIVE_GUIDANCE),
        "num_inference_steps": integer(1, MAX_LIVE_STEPS),
        "seed": integer(0, MAX_SEED),
        "safety_check": boolean,
    },
    runtime_keys=(
        "prompt",
        "negative_prompt",
        "strength",
        "guidance_scale",
        "num_inference_steps",
        "seed",
        "safety_check",
    ),
    render=render_image_to_image,
    cross_check=check_steps_times_strength,
)

DEPTH_ESTIMATION = LiveTask(
    task="depth-estimation",
    defaults={"colormap": "turbo", "invert": False},
    checks={"colormap": choice(COLORMAPS), "invert": boolean},
    runtime_keys=(),
    render=render_depth,
)

IMAGE_SEGMENTATION = LiveTask(
    task="image-segmentation",
    defaults={"alpha": 0.5},
    checks={"alpha": number(0.0, 1.0)},
    runtime_keys=(),
    render=render_segmentation,
)

LIVE = {live.task: live for live in (IMAGE_TO_IMAGE, DEPTH_ESTIMATION, IMAGE_SEGMENTATION)}


def live_task(task: str | None) -> LiveTask | None:
    """The live side of `task`, or None where the task has no picture to return per frame."""
    return LIVE.get(task or "")
