"""BYOC `POST /v1/infer` on a task backend, with a versioned JSON schema per task (`GET /v1/schema`).

BYOC has no fixed contract (the proxy passes the worker's status and body through), so this
worker defines one per task, versioned by `schema` = `lpbyoc.task.v1`: media travel base64 in
JSON, params use ai-runner's names and defaults, outputs are lossless where numbers matter
(16-bit PNG or raw float32 with its shape). Capacity keeps the BYOC semantics of `/v1/infer`:
an immediate 503 + Retry-After (the orchestrator itself answers 503 when a capability is full).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
from aiohttp import web

from lpbyoc_worker.inference import TritonUnavailable
from lpbyoc_worker.runtimes.backends import TaskBackend
from lpbyoc_worker.runtimes.base import TaskRequest, TaskResult

from . import forms, imaging, media
from .airunner import backend_error
from .errors import RequestError
from .jobs import JSON_TYPE, JobHandlers, read_body
from .pipelines import PIPELINES, Limits, Pipeline, safety_header
from .schema import JOB_PATH

SCHEMA_VERSION = "lpbyoc.task.v1"
IMAGE_TASKS = ("text-to-image", "image-to-image", "upscale")
DEPTH_FORMATS = ("png16", "float32")

_B64 = {"type": "string", "contentEncoding": "base64"}
_RAW = {
    "type": "object",
    "description": "a little-endian array: base64 `data` of `shape`, or a 16-bit greyscale PNG",
    "properties": {
        "format": {"enum": ["png16", "float32", "int32"]},
        "data": _B64,
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
    "required": ["format", "data", "shape"],
}


def _media_for(task: str) -> str | None:
    pipeline = PIPELINES.get(task)
    if pipeline is not None:
        return pipeline.media
    return "image"  # depth-estimation, image-segmentation


def _param_fields(task: str, limits: Limits) -> tuple[forms.Field, ...]:
    pipeline = PIPELINES.get(task)
    if pipeline is None:
        if task == "depth-estimation":
            return (forms.Field("depth_format", "str", "png16"),)
        return ()
    return tuple(f for f in pipeline.fields(limits) if f.kind != "file" and f.name != "model_id")


def _field_schema(field: forms.Field) -> dict[str, Any]:
    kinds = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
    schema: dict[str, Any] = {"type": kinds[field.kind]}
    if not field.required and field.default is not None:
        schema["default"] = field.default
    if field.ge is not None:
        schema["minimum"] = field.ge
    if field.le is not None:
        schema["maximum"] = field.le
    return schema


def _output_schema(task: str) -> dict[str, Any]:
    if task in IMAGE_TASKS:
        item = {
            "type": "object",
            "properties": {"image": _B64, "seed": {"type": "integer"}, "nsfw": {"type": "boolean"}},
            "required": ["image", "seed", "nsfw"],
        }
        props: dict[str, Any] = {
            "images": {"type": "array", "items": item, "description": "PNG images"},
            "safety_check": {"enum": ["checked", "skipped", "unavailable"]},
        }
    elif task == "image-to-video":
        props = {
            "frames": {"type": "array", "items": _B64, "description": "PNG frames"},
            "fps": {"type": "integer"},
            "seed": {"type": "integer"},
            "nsfw": {"type": "boolean"},
            "safety_check": {"enum": ["checked", "skipped", "unavailable"]},
        }
    elif task == "depth-estimation":
        props = {
            "depth": {
                **_RAW,
                "description": "png16: depth scaled from [min, max] to 0..65535; float32: raw HxW",
            },
            "min": {"type": "number"},
            "max": {"type": "number"},
        }
    elif task == "image-segmentation":
        props = {
            "segmentation": {**_RAW, "description": "png16 label map (one class id per pixel)"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    elif task == "segment-anything-2":
        props = {
            "masks": {**_RAW, "description": "float32 NxHxW, best score first"},
            "logits": {**_RAW, "description": "float32 Nx256x256, same order"},
            "scores": {"type": "array", "items": {"type": "number"}},
        }
    elif task == "audio-to-text":
        props = {"text": {"type": "string"}, "chunks": {"type": "array"}}
    else:
        props = {"text": {"type": "string"}}
    common = {
        "schema": {"const": SCHEMA_VERSION},
        "task": {"const": task},
        "model_id": {"type": "string"},
        "timings": {"type": "object"},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"InferResponse ({task})",
        "type": "object",
        "properties": {**common, **props},
        "required": ["schema", "task", "model_id", *props],
    }


def task_schema(task: str, limits: Limits) -> dict[str, Any]:
    """What GET /v1/schema publishes for a task worker."""
    kind = _media_for(task)
    properties: dict[str, Any] = {
        "params": {
            "type": "object",
            "properties": {f.name: _field_schema(f) for f in _param_fields(task, limits)},
            "required": [f.name for f in _param_fields(task, limits) if f.required],
            "additionalProperties": False,
        }
    }
    required = ["params"] if properties["params"]["required"] else []
    if kind is not None:
        properties[kind] = {**_B64, "description": f"the {kind} file, base64 (a data: URL is accepted)"}
        required.insert(0, kind)
    return {
        "schema": SCHEMA_VERSION,
        "task": task,
        "path": JOB_PATH,
        "method": "POST",
        "input": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"InferRequest ({task})",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
        "output": _output_schema(task),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw(array: np.ndarray, dtype: str, fmt: str) -> dict[str, Any]:
    contiguous = np.ascontiguousarray(array, dtype=dtype)
    return {"format": fmt, "data": _b64(contiguous.tobytes()), "shape": list(contiguous.shape)}


def _png16(array: np.ndarray) -> dict[str, Any]:
    return {
        "format": "png16",
        "data": _b64(media.encode_png(array.astype(np.uint16))),
        "shape": list(array.shape),
    }


def encode_result(
    task: str, result: TaskResult, params: dict[str, Any], safety: str | None
) -> dict[str, Any]:
    """The task's output object (without the common keys)."""
    data, tensors = result.data, result.tensors
    if task in IMAGE_TASKS:
        images = media.as_rgb_images(np.asarray(tensors["IMAGES"]), "IMAGES")
        count = images.shape[0]
        seed = int(params.get("seed", 0))
        seeds = data.get("seeds", [seed + i for i in range(count)])
        nsfw = data.get("nsfw", [False] * count)
        return {
            "images": [
                {"image": _b64(media.encode_png(img)), "seed": int(s), "nsfw": bool(n)}
                for img, s, n in zip(images, seeds, nsfw, strict=True)
            ],
            "safety_check": safety,
        }
    if task == "image-to-video":
        frames = media.as_rgb_images(np.asarray(tensors["FRAMES"]), "FRAMES")
        nsfw = data.get("nsfw", False)
        return {
            "frames": [_b64(media.encode_png(frame)) for frame in frames],
            "fps": int(data.get("fps", params.get("fps", 6))),
            "seed": int(data.get("seed", params.get("seed", 0))),
            "nsfw": any(nsfw) if isinstance(nsfw, list) else bool(nsfw),
            "safety_check": safety,
        }
    if task == "depth-estimation":
        depth = np.asarray(tensors["DEPTH"], dtype=np.float32)
        low = float(data.get("min", float(depth.min()) if depth.size else 0.0))
        high = float(data.get("max", float(depth.max()) if depth.size else 0.0))
        if params.get("depth_format") == "float32":
            encoded = _raw(depth, "<f4", "float32")
        else:
            scale = 65535.0 / (high - low) if high > low else 0.0
            encoded = _png16(np.clip(np.rint((depth - low) * scale), 0, 65535))
        return {"depth": encoded, "min": low, "max": high}
    if task == "image-segmentation":
        labels = np.asarray(tensors["LABELS"])
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            encoded = _raw(labels, "<i4", "int32")
        else:
            encoded = _png16(labels)
        return {
            "segmentation": encoded,
            "labels": {str(k): str(v) for k, v in data.get("labels", {}).items()},
        }
    if task == "segment-anything-2":
        scores = np.asarray(data.get("scores", []), dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        return {
            "masks": _raw(np.asarray(tensors["MASKS"])[order], "<f4", "float32"),
            "logits": _raw(np.asarray(tensors["LOGITS"])[order], "<f4", "float32"),
            "scores": scores[order].tolist(),
        }
    if task == "audio-to-text":
        return {"text": str(data.get("text", "")), "chunks": list(data.get("chunks") or [])}
    return {"text": str(data.get("text", ""))}


class TaskJobHandlers(JobHandlers):
    """`/v1/infer` for a task worker; capacity, drain and metrics as the TorchScript job route."""

    def __init__(self, *args: Any, task_backend: TaskBackend, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_backend = task_backend
        self.task = task_backend.task
        self.limits = Limits(
            max_side=self.settings.limits.max_side, max_images_per_prompt=self.settings.max_images_per_prompt
        )
        self.fields = _param_fields(self.task, self.limits)
        self.pipeline: Pipeline | None = PIPELINES.get(self.task)

    async def infer(self, request: web.Request) -> web.StreamResponse:
        return await self._in_slot(self._task_job, request)

    def _params(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        raw = payload.get("params", {})
        if not isinstance(raw, dict):
            raise RequestError(422, "Invalid request at params: must be an object.")
        unknown = sorted(set(raw) - {f.name for f in self.fields})
        if unknown:
            raise RequestError(422, f"Invalid request at params: unknown parameter(s) {', '.join(unknown)}.")
        try:
            values = forms.parse_fields(raw, self.fields, "json")
        except forms.ValidationFailed as exc:
            raise RequestError(422, f"Invalid request at params: {exc}.") from None
        if self.pipeline is not None:
            return values, self.pipeline.build(values)
        if self.task == "depth-estimation" and values["depth_format"] not in DEPTH_FORMATS:
            raise RequestError(
                422, f"Invalid request at params/depth_format: one of {', '.join(DEPTH_FORMATS)}."
            )
        return values, {}

    async def _task_job(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.content_type != JSON_TYPE:
            raise RequestError(
                415, f"Unsupported Content-Type '{request.content_type}'; send application/json."
            )
        body = await read_body(request, self.settings.max_body_bytes)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"Body is not valid JSON: {exc}.") from None
        if not isinstance(payload, dict):
            raise RequestError(422, "Invalid request at body: must be an object.")
        kind = _media_for(self.task)
        unknown = sorted(set(payload) - {"params", *([kind] if kind else [])})
        if unknown:
            raise RequestError(422, f"Invalid request: unknown field(s) {', '.join(unknown)}.")
        values, params = self._params(payload)
        image = audio = None
        if kind == "image":
            if "image" not in payload:
                raise RequestError(422, "Invalid request at body: 'image' is a required property.")
            image = media.decode_image(imaging.decode_base64(payload["image"]), self.settings.limits)
        elif kind == "audio":
            if "audio" not in payload:
                raise RequestError(422, "Invalid request at body: 'audio' is a required property.")
            audio = media.decode_audio(
                imaging.decode_base64(payload["audio"], "audio"), max_seconds=self.settings.max_audio_seconds
            )
        model_started = time.perf_counter()
        try:
            result = await self.task_backend.run(TaskRequest(params=params, image=image, audio=audio))
        except Exception as exc:
            failure = backend_error(exc, self.pipeline or _GENERIC)
            if isinstance(exc, TritonUnavailable):
                # BYOC keeps its own statuses: Triton down is retryable elsewhere (503 + Retry-After).
                raise RequestError(503, failure.msg, {"Retry-After": "1"}) from None
            raise failure from None
        model_seconds = time.perf_counter() - model_started
        safety = safety_header(self.pipeline, values, result) if self.pipeline else None
        output = encode_result(self.task, result, {**values, **params}, safety)
        total = time.perf_counter() - started
        self.metrics.triton_seconds.labels("infer").observe(model_seconds)
        self.metrics.adapter_seconds.labels("infer").observe(max(0.0, total - model_seconds))
        return web.json_response(
            {
                "schema": SCHEMA_VERSION,
                "task": self.task,
                "model_id": self.settings.model_id,
                **output,
                "timings": {"model_ms": round(model_seconds * 1e3, 3), "total_ms": round(total * 1e3, 3)},
            },
            headers={"Server-Timing": f"model;dur={model_seconds * 1e3:.3f}"},
        )


class _Generic:
    task = "task"
    failure = "The model failed the request."


_GENERIC: Any = _Generic()
