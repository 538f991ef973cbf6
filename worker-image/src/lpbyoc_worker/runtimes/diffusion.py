"""The diffusers family: text-to-image, image-to-image, upscale and image-to-video runtimes.

Each runtime loads its snapshot once (offline, from the snapshot directory alone) and keeps the
pipeline resident. Parameters are ai-runner's field names with ai-runner's defaults
(/work/shared/ai-runner-openapi.yaml); anything out of range, unknown, or not supported here
(LoRAs) is an InvalidRequest rather than silently dropped.

Determinism: image i of a request is drawn from `torch.Generator(device).manual_seed(seed + i)`,
so a seed names an image, and image i of a batch is the image a one-image request with seed + i
gives (up to the float noise of batched kernels).

Safety: when the snapshot has a `safety_checker` (SD 1.5's StableDiffusionSafetyChecker) and the
request asks for the check, it runs on every image and its verdict is reported per image; a
flagged image comes back black, as the snapshot's own pipeline returns it. Without a checker in
the snapshot (SDXL, SD-turbo, SVD, most upscalers) or with `safety_check: false`, nothing is
checked: `nsfw` is all False and `safety_checker` is False, so the adapter can tell the client.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForText2Image,
    StableDiffusionUpscalePipeline,
    StableVideoDiffusionPipeline,
)
from PIL import Image

from .base import (
    Device,
    IncompatibleModel,
    InvalidRequest,
    Runtime,
    TaskRequest,
    TaskResult,
    TensorOutput,
    require_image,
    seed_of,
)
from .detect import _diffusers_problems, check_serves, inspect_snapshot

MAX_IMAGES_PER_REQUEST = 8
MAX_SIDE = 4096  # pixels, for every image side a request asks for or sends
MIN_SIDE = 8
SIDE_MULTIPLE = 8  # the SD/SDXL/SVD pipelines refuse other sizes
MAX_STEPS = 1000  # the schedulers' usual num_train_timesteps
MAX_GUIDANCE_SCALE = 100.0
MAX_NOISE_AUG_STRENGTH = 10.0  # SVD is used at 0..~1; the adapter's form allows up to 10
MAX_FPS = 120
FP16_VARIANT = "fp16"
VARIANT_NAME = re.compile(rf"\.{FP16_VARIANT}[.-]")  # model.fp16.safetensors, model.fp16-00001-of-...
# Components a snapshot may leave out: the pipeline then loads without them (checker-less SD).
OPTIONAL_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")
SAFETY_PAIR = ("safety_checker", "feature_extractor")  # the checker cannot run without its extractor
# Keys every task accepts besides its own: the adapter's seed, and the model id ai-runner takes
# (ignored: the capability's snapshot is the model).
COMMON_PARAMS = ("seed", "model_id")
# ai-runner's InstructPix2Pix-only knob; accepted at its default so ai-runner clients keep working.
IMAGE_GUIDANCE_SCALE_DEFAULT = 1.5

IMAGES = TensorOutput("IMAGES", "TYPE_UINT8", (-1, -1, -1, 3))
FRAMES = TensorOutput("FRAMES", "TYPE_UINT8", (-1, -1, -1, 3))


# ---------------------------------------------------------------------------------------------
# Loading


def read_model_index(model_dir: Path) -> dict[str, Any]:
    try:
        index = json.loads((model_dir / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise IncompatibleModel(
            f"{model_dir} has no readable model_index.json ({exc}): the diffusers tasks need a "
            "diffusers pipeline snapshot"
        ) from None
    if not isinstance(index, dict):
        raise IncompatibleModel(f"{model_dir}/model_index.json is not a JSON object")
    return index


def listed_components(index: Mapping[str, Any]) -> list[str]:
    """Components model_index.json names with a class (`[null, null]` entries are left out)."""
    return [
        name
        for name, spec in index.items()
        if not name.startswith("_") and isinstance(spec, list) and spec[:1] != [None]
    ]


def absent_optional_components(model_dir: Path, index: Mapping[str, Any]) -> list[str]:
    """Optional components listed but not in the snapshot (e.g. allowPatterns left out the
    checker): loaded as None. A checker without its feature extractor counts as absent too."""
    listed = listed_components(index)
    absent = [c for c in OPTIONAL_COMPONENTS if c in listed and not (model_dir / c).is_dir()]
    if any(c in absent for c in SAFETY_PAIR):
        absent += [c for c in SAFETY_PAIR if c in listed and c not in absent]
    return absent


def weights_variant(model_dir: Path, index: Mapping[str, Any]) -> str | None:
    """The variant to load: "fp16" when some component holds only fp16-variant weights
    (`*.fp16.safetensors`, or shards `*.fp16-00001-of-00002.safetensors`), as a snapshot fetched
    with an allowPatterns of `*.fp16.safetensors` does; diffusers then takes the plain weights of
    any component without the variant. None when every component has plain weights."""
    for component in listed_components(index):
        folder = model_dir / component
        weights = [p.name for p in folder.glob("*") if p.suffix in (".safetensors", ".bin")]
        variant = [name for name in weights if VARIANT_NAME.search(name)]
        if variant and len(variant) == len(weights):
            return FP16_VARIANT
    return None


def check_snapshot(model_dir: Path, task: str, index: Mapping[str, Any]) -> list[str]:
    """Raise IncompatibleModel unless the snapshot's class serves `task` and its required files are
    there; returns the optional components to load as None."""
    absent = absent_optional_components(model_dir, index)
    kept = {name: spec for name, spec in index.items() if name not in absent}
    info = inspect_snapshot(model_dir)
    check_serves(replace(info, problems=tuple(_diffusers_problems(model_dir, kept))), task)
    return absent


def load_pipeline(loader: Any, model_dir: Path, device: Device, task: str) -> tuple[Any, str | None]:
    """`loader.from_pretrained` from the snapshot alone, in the device's dtype, on the device;
    returns the pipeline and the weights variant it loaded (None: the plain weights)."""
    index = read_model_index(model_dir)
    absent = check_snapshot(model_dir, task, index)
    kwargs: dict[str, Any] = {"dtype": device.dtype, "local_files_only": True}
    kwargs.update(dict.fromkeys(absent))
    variant = weights_variant(model_dir, index)
    if variant:
        kwargs["variant"] = variant
    pipeline = loader.from_pretrained(str(model_dir), **kwargs)
    pipeline.to(device.name)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, variant


# ---------------------------------------------------------------------------------------------
# Parameters


class Params:
    """One request's parameters: `defaults` names every key the task takes (with ai-runner's
    default); a missing or null key takes its default, a bad value raises InvalidRequest."""

    def __init__(self, task: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self.task = task
        self.params = params
        self.defaults = defaults
        reject_loras(params.get("loras"))
        unknown = sorted(set(params) - set(defaults) - set(COMMON_PARAMS) - {"loras"})
        if unknown:
            raise InvalidRequest(
                f"{task} does not take {', '.join(unknown)}; it takes: "
                f"{', '.join(sorted({*defaults, *COMMON_PARAMS}))}"
            )

    def _value(self, name: str) -> Any:
        value = self.params.get(name)
        return self.defaults[name] if value is None else value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._value(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON writers may send 4.0
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidRequest(f"{name} must be an integer in {low}..{high}, got {value!r}")
        return value

    def number(self, name: str, low: float, high: float, *, low_open: bool = False) -> float:
        value = self._value(name)
        in_range = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        in_range = in_range and (low < value if low_open else low <= value) and value <= high
        if not in_range:
            bounds = f"{'(' if low_open else '['}{low}, {high}]"
            raise InvalidRequest(f"{name} must be a number in {bounds}, got {value!r}")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self._value(name)
        if not isinstance(value, bool):
            raise InvalidRequest(f"{name} must be true or false, got {value!r}")
        return value

    def text(self, name: str) -> str:
        value = self._value(name)
        if value is None:
            raise InvalidRequest(f"{self.task} needs {name}")
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
        return value

    def side(self, name: str) -> int:
        value = self.integer(name, MIN_SIDE, MAX_SIDE)
        if value % SIDE_MULTIPLE:
            raise InvalidRequest(f"{name} must be a multiple of {SIDE_MULTIPLE}, got {value}")
        return value

    def steps(self) -> int:
        return self.integer("num_inference_steps", 1, MAX_STEPS)


def reject_loras(loras: Any) -> None:
    """LoRAs would change the model per request; this worker serves the snapshot as it is, and
    says so instead of answering with the base model."""
    if loras in (None, "", {}) or (isinstance(loras, str) and loras.strip() in ("", "{}")):
        return
    raise InvalidRequest(
        f"loras are not supported by this worker: got {loras!r}; send the request without loras, "
        "or serve a snapshot with the LoRA fused into its weights"
    )


def reject_image_guidance_scale(params: Params) -> None:
    """image_guidance_scale steers InstructPix2Pix only, which no runtime here serves: accepted at
    ai-runner's default (clients send it unchanged), refused when a client means something by it."""
    value = params.number("image_guidance_scale", 0.0, MAX_GUIDANCE_SCALE)
    if value != IMAGE_GUIDANCE_SCALE_DEFAULT:
        raise InvalidRequest(
            f"image_guidance_scale applies only to InstructPix2Pix models, which this worker does not "
            f"serve; leave it unset (or at {IMAGE_GUIDANCE_SCALE_DEFAULT}), got {value}"
        )


def prompt_arguments(pipeline: Any, params: Params) -> dict[str, Any]:
    """prompt/negative_prompt; on pipelines with a second text encoder (SDXL), ai-runner's
    "first|second" form sends the second part to prompt_2. An empty negative prompt is no negative
    prompt: the pipeline's own default (SDXL then uses zero embeddings, not those of "")."""
    takes_second = "prompt_2" in inspect.signature(pipeline.__call__).parameters
    arguments: dict[str, Any] = {}
    for name in ("prompt", "negative_prompt"):
        if name not in params.defaults:
            continue
        text = params.text(name)
        parts = text.split("|") if takes_second and "|" in text else [text]
        if len(parts) > 2:
            raise InvalidRequest(f"{name} takes at most one '|' (first|second text encoder), got {text!r}")
        arguments[name] = parts[0] or (None if name == "negative_prompt" else "")
        if len(parts) == 2:
            arguments[f"{name}_2"] = parts[1] or None
    return arguments


# ---------------------------------------------------------------------------------------------
# Running


def generators(device: Device, seed: int, count: int) -> list[torch.Generator]:
    return [torch.Generator(device.name).manual_seed(seed + i) for i in range(count)]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats (output_type="np") → uint8, rounded as diffusers' numpy_to_pil rounds."""
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def image_input(request: TaskRequest) -> Image.Image:
    image = require_image(request)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise InvalidRequest(f"the image must be {MIN_SIDE}..{MAX_SIDE} px a side, got {width}x{height}")
    return Image.fromarray(np.ascontiguousarray(image))


class DiffusersRuntime(Runtime):
    """Loads `loader` from the snapshot; keeps the safety checker beside the pipeline so a request
    can skip it, and runs it the way the pipeline would (same input, same black-out)."""

    loader: ClassVar[Any]
    defaults: ClassVar[Mapping[str, Any]]

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        # Any: the four pipeline classes share the calls used here, not a type that declares them.
        self.pipeline: Any
        self.pipeline, self.variant = load_pipeline(self.loader, model_dir, device, self.task)
        self.safety_checker: Any = getattr(self.pipeline, "safety_checker", None)
        self.feature_extractor: Any = getattr(self.pipeline, "feature_extractor", None)
        if self.safety_checker is not None:
            self.pipeline.safety_checker = None  # run per request below, when asked for

    @property
    def has_safety_checker(self) -> bool:
        return self.safety_checker is not None and self.feature_extractor is not None

    def params(self, request: TaskRequest) -> Params:
        return Params(self.task, request.params, self.defaults)

    def check_safety(self, images: np.ndarray, wanted: bool) -> tuple[np.ndarray, list[bool], bool]:
        """(images, nsfw per image, whether a checker ran); flagged images are returned black."""
        if not (wanted and self.has_safety_checker):
            return images, [False] * len(images), False
        pil_images = [Image.fromarray(image) for image in to_uint8(images)]
        clip_input = self.feature_extractor(pil_images, return_tensors="pt").pixel_values
        clip_input = clip_input.to(self.device.name, self.device.dtype)
        checked, flags = self.safety_checker(images=images.copy(), clip_input=clip_input)
        return np.asarray(checked, dtype=images.dtype), [bool(flag) for flag in flags], True

    def generate_images(
        self, arguments: dict[str, Any], seed: int, count: int, safety_check: bool
    ) -> TaskResult:
        """Run the pipeline for `count` images seeded seed, seed+1, ...; IMAGES and their flags."""
        with torch.inference_mode():
            output = self.pipeline(
                **arguments, generator=generators(self.device, seed, count), output_type="np"
            )
            images, nsfw, checked = self.check_safety(np.asarray(output.images), safety_check)
        return TaskResult(
            data={"seeds": [seed + i for i in range(count)], "nsfw": nsfw, "safety_checker": checked},
            tensors={IMAGES.name: to_uint8(images)},
        )


class TextToImage(DiffusersRuntime):
    """SD 1.5 / SD-turbo / SDXL / SDXL-turbo / Lightning snapshots, via AutoPipelineForText2Image."""

    task = "text-to-image"
    outputs = (IMAGES,)
    loader = AutoPipelineForText2Image
    defaults: ClassVar[Mapping[str, Any]] = {
        "prompt": None,
        "negative_prompt": "",
        "height": 576,
        "width": 1024,
        "guidance_scale": 7.5,
        "num_inference_steps": 50,
        "num_images_per_prompt": 1,
        "safety_check": True,
    }

    def run(self, request: TaskRequest) -> TaskResult:
        params = self.params(request)
        seed = seed_of(request.params)
        count = params.integer("num_images_per_prompt", 1, MAX_IMAGES_PER_REQUEST)
        arguments = {
            **prompt_arguments(self.pipeline, params),
            "height": params.side("height"),
            "width": params.side("width"),
            "guidance_scale": params.number("guidance_scale", 0.0, MAX_GUIDANCE_SCALE),
            "num_inference_steps": params.steps(),
            "num_images_per_prompt": count,
        }
        return self.generate_images(arguments, seed, count, params.boolean("safety_check"))


class ImageToImage(DiffusersRuntime):
    """The same snapshots via AutoPipelineForImage2Image. The output has the input's size rounded
    down to a multiple of the VAE's scale factor (8 for SD and SDXL)."""

    task = "image-to-image"
    media_inputs = ("IMAGE",)
    outputs = (IMAGES,)
    loader = AutoPipelineForImage2Image
    defaults: ClassVar[Mapping[str, Any]] = {
        "prompt": None,
        "negative_prompt": "",
        "strength": 0.8,
        "guidance_scale": 7.5,
        "image_guidance_scale": IMAGE_GUIDANCE_SCALE_DEFAULT,
        "num_inference_steps": 100,
        "num_images_per_prompt": 1,
        "safety_check": True,
    }

    def run(self, request: TaskRequest) -> TaskResult:
        params = self.params(request)
        seed = seed_of(request.params)
        reject_image_guidance_scale(params)
        count = params.integer("num_images_per_prompt", 1, MAX_IMAGES_PER_REQUEST)
        strength = params.number("strength", 0.0, 1.0, low_open=True)
        steps = params.steps()
        if int(steps * strength) < 1:
            raise InvalidRequest(
                f"num_inference_steps x strength must be at least 1 (the steps that actually run), "
                f"got {steps} x {strength}"
            )
        arguments = {
            **prompt_arguments(self.pipeline, params),
            "image": image_input(request),
            "strength": strength,
            "guidance_scale": params.number("guidance_scale", 0.0, MAX_GUIDANCE_SCALE),
            "num_inference_steps": steps,
            "num_images_per_prompt": count,
        }
        return self.generate_images(arguments, seed, count, params.boolean("safety_check"))


class Upscale(DiffusersRuntime):
    """StableDiffusionUpscalePipeline (stable-diffusion-x4-upscaler): one image, 4x the input's
    sides; the pipeline's own guidance scale (9.0) and noise level (20), as ai-runner leaves them."""

    task = "upscale"
    media_inputs = ("IMAGE",)
    outputs = (IMAGES,)
    loader = StableDiffusionUpscalePipeline
    defaults: ClassVar[Mapping[str, Any]] = {
        "prompt": None,
        "num_inference_steps": 75,
        "safety_check": True,
    }

    def run(self, request: TaskRequest) -> TaskResult:
        params = self.params(request)
        seed = seed_of(request.params)
        image = image_input(request)
        scale = self.pipeline.vae_scale_factor
        if max(image.size) * scale > MAX_SIDE:
            raise InvalidRequest(
                f"the upscaled image would be {image.width * scale}x{image.height * scale}; "
                f"the largest side this worker makes is {MAX_SIDE} px"
            )
        arguments = {
            **prompt_arguments(self.pipeline, params),
            "image": image,
            "num_inference_steps": params.steps(),
        }
        return self.generate_images(arguments, seed, 1, params.boolean("safety_check"))


class ImageToVideo(DiffusersRuntime):
    """StableVideoDiffusionPipeline: the UNet config's num_frames frames (14 for SVD, 25 for
    SVD-XT) at height x width, decoded DECODE_CHUNK_SIZE frames at a time to bound VAE memory. SVD
    snapshots carry no safety checker: `nsfw` is False and `safety_checker` False."""

    task = "image-to-video"
    media_inputs = ("IMAGE",)
    outputs = (FRAMES,)
    loader = StableVideoDiffusionPipeline
    DECODE_CHUNK_SIZE = 8
    defaults: ClassVar[Mapping[str, Any]] = {
        "height": 576,
        "width": 1024,
        "fps": 6,
        "motion_bucket_id": 127,
        "noise_aug_strength": 0.02,
        "num_inference_steps": 25,
        "safety_check": True,
    }

    def run(self, request: TaskRequest) -> TaskResult:
        params = self.params(request)
        seed = seed_of(request.params)
        fps = params.integer("fps", 1, MAX_FPS)
        arguments = {
            "image": image_input(request),
            "height": params.side("height"),
            "width": params.side("width"),
            "fps": fps,
            "motion_bucket_id": params.integer("motion_bucket_id", 0, 1023),
            "noise_aug_strength": params.number("noise_aug_strength", 0.0, MAX_NOISE_AUG_STRENGTH),
            "num_inference_steps": params.steps(),
            "decode_chunk_size": self.DECODE_CHUNK_SIZE,
        }
        safety_check = params.boolean("safety_check")
        with torch.inference_mode():
            output = self.pipeline(
                **arguments, generator=torch.Generator(self.device.name).manual_seed(seed), output_type="np"
            )
        frames = np.asarray(output.frames)[0]  # (videos, F, H, W, 3) → one video
        frames, nsfw, checked = self.check_safety(frames, safety_check)
        return TaskResult(
            data={"seed": seed, "fps": fps, "nsfw": any(nsfw), "safety_checker": checked},
            tensors={FRAMES.name: to_uint8(frames)},
        )


__all__ = ["ImageToImage", "ImageToVideo", "TextToImage", "Upscale"]
