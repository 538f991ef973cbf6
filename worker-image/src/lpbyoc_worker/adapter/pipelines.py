"""The ai-runner pipeline routes, one spec per task: fields, runtime params, response shape.

Everything here is pure: `fields` feed `forms.parse_fields`, `build` turns the parsed values into
the runtime's `TaskRequest` params (ai-runner's names and defaults, a seed always set for
diffusion tasks), `respond` turns a `TaskResult` into ai-runner's JSON. The HTTP side (limits,
auth, queueing, error mapping) is `airunner.py`. Field lists, defaults and response shapes follow
ai-runner v0.14.1's OpenAPI spec (`../shared/ai-runner-openapi.yaml`) and its route code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lpbyoc_worker.runtimes.base import MAX_SEED, TaskResult

from .errors import RequestError
from .forms import Field
from .media import as_rgb_images, png_data_url

Body = Literal["json", "form"]
Media = Literal["image", "audio"] | None

# Bounds this worker enforces beyond the spec (answered 422, as pydantic `ge`/`le` would be).
MAX_STEPS = 500
MAX_IMAGES_PER_PROMPT = 8
MAX_FPS = 60


@dataclass(frozen=True)
class Limits:
    """Per-deployment bounds on what a request may ask the model to produce."""

    max_side: int = 4096
    max_images_per_prompt: int = MAX_IMAGES_PER_PROMPT


# Fields -----------------------------------------------------------------------------------------
def _steps(default: int) -> Field:
    return Field("num_inference_steps", "int", default, ge=1, le=MAX_STEPS)


def _seed() -> Field:
    return Field("seed", "int", None, ge=0, le=MAX_SEED)


def _side(name: str, default: int, limits: Limits) -> Field:
    return Field(name, "int", default, ge=8, le=limits.max_side)


def _images(limits: Limits) -> Field:
    return Field("num_images_per_prompt", "int", 1, ge=1, le=limits.max_images_per_prompt)


def _text_to_image_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("model_id", "str", ""),
        Field("loras", "str", ""),
        Field("prompt", "str"),
        _side("height", 576, limits),
        _side("width", 1024, limits),
        Field("guidance_scale", "float", 7.5, ge=0),
        Field("negative_prompt", "str", ""),
        Field("safety_check", "bool", True),
        _seed(),
        _steps(50),
        _images(limits),
    )


def _image_to_image_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("prompt", "str"),
        Field("image", "file"),
        Field("model_id", "str", ""),
        Field("loras", "str", ""),
        Field("strength", "float", 0.8, ge=0, le=1),
        Field("guidance_scale", "float", 7.5, ge=0),
        Field("image_guidance_scale", "float", 1.5, ge=0),
        Field("negative_prompt", "str", ""),
        Field("safety_check", "bool", True),
        _seed(),
        _steps(100),
        _images(limits),
    )


def _upscale_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("prompt", "str"),
        Field("image", "file"),
        Field("model_id", "str", ""),
        Field("safety_check", "bool", True),
        _seed(),
        _steps(75),
    )


def _image_to_video_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("image", "file"),
        Field("model_id", "str", ""),
        _side("height", 576, limits),
        _side("width", 1024, limits),
        Field("fps", "int", 6, ge=1, le=MAX_FPS),
        Field("motion_bucket_id", "int", 127, ge=0, le=1023),
        Field("noise_aug_strength", "float", 0.02, ge=0, le=10),
        Field("safety_check", "bool", True),
        _seed(),
        _steps(25),
    )


def _image_to_text_fields(limits: Limits) -> tuple[Field, ...]:
    return (Field("image", "file"), Field("prompt", "str", ""), Field("model_id", "str", ""))


def _audio_to_text_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("audio", "file"),
        Field("model_id", "str", ""),
        Field("return_timestamps", "str", "true"),
        Field("metadata", "str", "{}"),
    )


def _sam2_fields(limits: Limits) -> tuple[Field, ...]:
    return (
        Field("image", "file"),
        Field("model_id", "str", ""),
        Field("point_coords", "str", None),
        Field("point_labels", "str", None),
        Field("box", "str", None),
        Field("mask_input", "str", None),
        Field("multimask_output", "bool", True),
        Field("return_logits", "bool", True),
        Field("normalize_coords", "bool", True),
    )


# Params -------------------------------------------------------------------------------------------
def parse_loras(text: str) -> dict[str, float]:
    """ai-runner's `loras` form string: a JSON object {repo: weight}; 400 naming what is wrong."""
    try:
        loras = json.loads(text)
    except json.JSONDecodeError:
        raise RequestError(400, f"Unable to parse '{text}' as JSON.") from None
    if not isinstance(loras, dict):
        raise RequestError(400, f"loras must be a JSON object of repository id to weight, got '{text}'.")
    parsed: dict[str, float] = {}
    for repo, weight in loras.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise RequestError(400, f"Invalid weight for LoRA '{repo}': {weight!r} is not a number.")
        parsed[str(repo)] = float(weight)
    return parsed


def choose_seed(seed: int | None, count: int, rng: random.Random | None = None) -> int:
    """The client's seed, or a random one; image i gets seed + i, which must stay a valid seed."""
    if seed is None:
        return (rng or random).randint(0, MAX_SEED - (count - 1))
    if seed + count - 1 > MAX_SEED:
        raise RequestError(
            400, f"seed {seed} + {count} images exceeds the largest seed {MAX_SEED}: image i uses seed + i."
        )
    return seed


def check_divisible_by_8(height: int, width: int) -> None:
    # diffusers' own rule (its ValueError, which ai-runner answers 400).
    if height % 8 or width % 8:
        raise RequestError(
            400, f"`height` and `width` have to be divisible by 8 but are {height} and {width}."
        )


def _diffusion_common(values: Mapping[str, Any], count: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "seed": choose_seed(values["seed"], count),
        "num_inference_steps": values["num_inference_steps"],
        "safety_check": values["safety_check"],
    }
    if values.get("loras"):
        # Passed through: a runtime that cannot load them answers InvalidRequest (400) naming them.
        params["loras"] = parse_loras(values["loras"])
    return params


def _build_text_to_image(values: Mapping[str, Any]) -> dict[str, Any]:
    check_divisible_by_8(values["height"], values["width"])
    count = values["num_images_per_prompt"]
    return {
        **_diffusion_common(values, count),
        "prompt": values["prompt"],
        "negative_prompt": values["negative_prompt"],
        "guidance_scale": values["guidance_scale"],
        "height": values["height"],
        "width": values["width"],
        "num_images_per_prompt": count,
    }


def _build_image_to_image(values: Mapping[str, Any]) -> dict[str, Any]:
    count = values["num_images_per_prompt"]
    return {
        **_diffusion_common(values, count),
        "prompt": values["prompt"],
        "negative_prompt": values["negative_prompt"],
        "strength": values["strength"],
        "guidance_scale": values["guidance_scale"],
        "image_guidance_scale": values["image_guidance_scale"],
        "num_images_per_prompt": count,
    }


def _build_upscale(values: Mapping[str, Any]) -> dict[str, Any]:
    return {**_diffusion_common(values, 1), "prompt": values["prompt"]}


def _build_image_to_video(values: Mapping[str, Any]) -> dict[str, Any]:
    check_divisible_by_8(values["height"], values["width"])
    return {
        **_diffusion_common(values, 1),
        "height": values["height"],
        "width": values["width"],
        "fps": values["fps"],
        "motion_bucket_id": values["motion_bucket_id"],
        "noise_aug_strength": values["noise_aug_strength"],
    }


def _build_image_to_text(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"prompt": values["prompt"]}


def parse_return_timestamps(value: str) -> bool | str:
    """ai-runner's rule: true/1/sentence → True, false/0 → False, word → "word"."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "sentence"):
        return True
    if lowered in ("false", "0"):
        return False
    if lowered == "word":
        return "word"
    raise RequestError(
        400, f"return_timestamps must be 'sentence', 'word', 'true' or 'false', got '{value}'."
    )


def parse_metadata(text: str) -> dict[str, Any]:
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"metadata is not valid JSON: {exc}.") from None
    if not isinstance(metadata, dict):
        raise RequestError(400, "metadata must be a JSON object.")
    return metadata


def _build_audio_to_text(values: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"return_timestamps": parse_return_timestamps(values["return_timestamps"])}
    language = parse_metadata(values["metadata"]).get("language")
    if language is not None:
        if not isinstance(language, str) or not language:
            raise RequestError(400, "metadata.language must be a non-empty string.")
        params["language"] = language
    return params


def parse_json_array(text: str | None, name: str) -> list[Any] | None:
    """ai-runner's `json_str_to_np_array`: a JSON (nested) list of numbers, or None when not sent."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"Error parsing JSON for {name}: {exc}.") from None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} must be a JSON array of numbers, got '{text}'.") from None
    if array.ndim == 0 or array.dtype == object or not np.all(np.isfinite(array)):
        raise RequestError(400, f"{name} must be a JSON array of finite numbers, got '{text}'.")
    return value if isinstance(value, list) else [value]


def _build_sam2(values: Mapping[str, Any]) -> dict[str, Any]:
    if values["mask_input"] is not None:
        raise RequestError(400, "mask_input is not supported by this worker's segment-anything-2 runtime.")
    params: dict[str, Any] = {
        "multimask_output": values["multimask_output"],
        "return_logits": values["return_logits"],
        "normalize_coords": values["normalize_coords"],
    }
    for name in ("point_coords", "point_labels", "box"):
        array = parse_json_array(values[name], name)
        if array is not None:
            params[name] = array
    return params


# Responses ---------------------------------------------------------------------------------------
def _tensor(result: TaskResult, name: str) -> np.ndarray:
    tensor = result.tensors.get(name)
    if tensor is None:
        raise RequestError(500, f"The model returned no {name} output.")
    return np.asarray(tensor)


def _nsfw_list(result: TaskResult, count: int) -> list[bool]:
    nsfw = result.data.get("nsfw", [False] * count)
    if isinstance(nsfw, bool):
        nsfw = [nsfw] * count
    return [bool(flag) for flag in nsfw]


def respond_images(
    result: TaskResult, values: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """`{"images": [{"url", "seed", "nsfw"}]}`: exactly the N images asked for (go-livepeer bills N)."""
    images = as_rgb_images(_tensor(result, "IMAGES"), "IMAGES")
    count = int(params.get("num_images_per_prompt", 1))
    if images.shape[0] != count:
        raise RequestError(500, f"The model returned {images.shape[0]} images for {count} requested.")
    seed = int(params["seed"])
    seeds = [int(s) for s in result.data.get("seeds", [seed + i for i in range(count)])]
    nsfw = _nsfw_list(result, count)
    if len(seeds) != count or len(nsfw) != count:
        raise RequestError(
            500, f"The model returned {len(seeds)} seeds and {len(nsfw)} nsfw flags for {count} images."
        )
    return {
        "images": [
            {"url": png_data_url(image), "seed": s, "nsfw": flag}
            for image, s, flag in zip(images, seeds, nsfw, strict=True)
        ]
    }


def respond_video(result: TaskResult, values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`{"frames": [[{"url", "seed", "nsfw"}, ...]]}`: one video, every frame with its seed and flag."""
    frames = as_rgb_images(_tensor(result, "FRAMES"), "FRAMES")
    seed = int(result.data.get("seed", params["seed"]))
    nsfw = result.data.get("nsfw", False)
    flag = any(bool(f) for f in nsfw) if isinstance(nsfw, list) else bool(nsfw)
    return {"frames": [[{"url": png_data_url(frame), "seed": seed, "nsfw": flag} for frame in frames]]}


def respond_text(result: TaskResult, values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    text = result.data.get("text")
    if not isinstance(text, str):
        raise RequestError(500, "The model returned no text.")
    return {"text": text}


def respond_transcript(
    result: TaskResult, values: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """`{"text", "chunks": [{"timestamp": [start, end], "text"}]}`; chunks empty without timestamps."""
    text = respond_text(result, values, params)["text"]
    chunks = []
    for chunk in result.data.get("chunks") or []:
        timestamp = chunk.get("timestamp") if isinstance(chunk, dict) else None
        stamp = list(timestamp) if isinstance(timestamp, list | tuple) else []
        chunks.append(
            {"timestamp": stamp, "text": str(chunk.get("text", "")) if isinstance(chunk, dict) else ""}
        )
    return {"text": text, "chunks": chunks}


def respond_masks(result: TaskResult, values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """ai-runner's MasksResponse: masks, scores and logits as Python-list strings, best score first."""
    masks = _tensor(result, "MASKS")
    logits = _tensor(result, "LOGITS")
    scores = np.asarray(result.data.get("scores", []), dtype=np.float64).reshape(-1)
    if not (masks.shape[0] == logits.shape[0] == scores.shape[0]):
        raise RequestError(
            500,
            f"The model returned {masks.shape[0]} masks, {logits.shape[0]} logits and {scores.shape[0]} scores.",
        )
    order = np.argsort(-scores, kind="stable")
    return {
        "masks": str(masks[order].tolist()),
        "scores": str(scores[order].tolist()),
        "logits": str(logits[order].tolist()),
    }


Responder = Callable[[TaskResult, Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Pipeline:
    """A route spec with its responder (which also sees the params the runtime was sent)."""

    task: str
    path: str
    body: Body
    media: Media
    fields: Callable[[Limits], tuple[Field, ...]]
    build: Callable[[Mapping[str, Any]], dict[str, Any]]
    respond: Responder
    failure: str
    safety: bool = False


PIPELINES: dict[str, Pipeline] = {
    p.task: p
    for p in (
        Pipeline(
            "text-to-image",
            "/text-to-image",
            "json",
            None,
            _text_to_image_fields,
            _build_text_to_image,
            respond_images,
            "Text-to-image pipeline error.",
            safety=True,
        ),
        Pipeline(
            "image-to-image",
            "/image-to-image",
            "form",
            "image",
            _image_to_image_fields,
            _build_image_to_image,
            respond_images,
            "Image-to-image pipeline error.",
            safety=True,
        ),
        Pipeline(
            "upscale",
            "/upscale",
            "form",
            "image",
            _upscale_fields,
            _build_upscale,
            respond_images,
            "Upscale pipeline error.",
            safety=True,
        ),
        Pipeline(
            "image-to-video",
            "/image-to-video",
            "form",
            "image",
            _image_to_video_fields,
            _build_image_to_video,
            respond_video,
            "Image-to-video pipeline error.",
            safety=True,
        ),
        Pipeline(
            "image-to-text",
            "/image-to-text",
            "form",
            "image",
            _image_to_text_fields,
            _build_image_to_text,
            respond_text,
            "Image-to-text pipeline error.",
        ),
        Pipeline(
            "audio-to-text",
            "/audio-to-text",
            "form",
            "audio",
            _audio_to_text_fields,
            _build_audio_to_text,
            respond_transcript,
            "Audio-to-text pipeline error.",
        ),
        Pipeline(
            "segment-anything-2",
            "/segment-anything-2",
            "form",
            "image",
            _sam2_fields,
            _build_sam2,
            respond_masks,
            "Segment Anything 2 error.",
        ),
    )
}


def pipeline_for(task: str | None) -> Pipeline | None:
    """The ai-runner route a task serves; None for tasks with no ai-runner route (depth, segmentation)."""
    return PIPELINES.get(task or "")


def safety_header(pipeline: Pipeline, values: Mapping[str, Any], result: TaskResult) -> str | None:
    """What X-Safety-Check tells the client: `checked`, `skipped` (not asked) or `unavailable`.

    `nsfw` must be a boolean in ai-runner's schema, so a model without a checker answers `false`;
    this header (and the log) is where the worker says that no check happened.
    """
    if not pipeline.safety:
        return None
    if not values.get("safety_check", True):
        return "skipped"
    return "checked" if result.data.get("safety_checker") else "unavailable"
