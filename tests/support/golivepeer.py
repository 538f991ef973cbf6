"""A double of go-livepeer's ai-runner client: requests as it builds them, answers as it reads them.

Requests follow `ai/worker/multipart.go` (go-livepeer): the file part first (`image`, or `audio`
for audio-to-text) with Go's `CreateFormFile` headers, then the fields in that file's order, only
those that were set, floats as `%f` (`0.800000`), booleans `true`/`false`, integers in decimal;
`model_id` is always set (the orchestrator fills it from aiModels). text-to-image is JSON, encoded
from the generated Go struct (fields in declaration order, `omitempty`).

Answers are judged by `ai/worker/runner.gen.go` + `worker.go`: only 200, 400, 401, 422 and 500 with
a JSON content type are decoded; 400/401/500 as `{"detail": {"msg"}}`, 422 as FastAPI's list.
Anything else leaves go-livepeer with a nil response and a nil error, which `core/ai_orchestrator.go`
dereferences: the judge fails with "orchestrator would panic".
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

DECODED = (200, 400, 401, 422, 500)

# Field order per route, as multipart.go writes them (after the file part).
FORM_ORDER: dict[str, tuple[str, ...]] = {
    "image-to-image": (
        "prompt",
        "model_id",
        "loras",
        "strength",
        "guidance_scale",
        "image_guidance_scale",
        "negative_prompt",
        "safety_check",
        "seed",
        "num_images_per_prompt",
        "num_inference_steps",
    ),
    "image-to-video": (
        "model_id",
        "height",
        "width",
        "fps",
        "motion_bucket_id",
        "noise_aug_strength",
        "seed",
        "safety_check",
        "num_inference_steps",
    ),
    "upscale": ("prompt", "model_id", "safety_check", "seed", "num_inference_steps"),
    "audio-to-text": ("model_id", "return_timestamps", "metadata"),
    "segment-anything-2": (
        "model_id",
        "point_coords",
        "point_labels",
        "box",
        "mask_input",
        "multimask_output",
        "return_logits",
        "normalize_coords",
    ),
    "image-to-text": ("prompt", "model_id"),
}
FLOAT_FIELDS = frozenset({"strength", "guidance_scale", "image_guidance_scale", "noise_aug_strength"})
# The generated TextToImageParams struct, in declaration order (encoding/json keeps it).
TEXT_TO_IMAGE_ORDER = (
    "guidance_scale",
    "height",
    "loras",
    "model_id",
    "negative_prompt",
    "num_images_per_prompt",
    "num_inference_steps",
    "prompt",
    "safety_check",
    "seed",
    "width",
)


class OrchestratorWouldPanic(AssertionError):
    pass


def go_value(name: str, value: Any) -> str:
    """A field value as multipart.go writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"  # strconv.FormatBool
    if name in FLOAT_FIELDS:
        return f"{float(value):f}"  # fmt.Sprintf("%f", float32)
    if isinstance(value, int):
        return str(value)  # strconv.Itoa
    return str(value)


def multipart_body(
    task: str, fields: Mapping[str, Any], file_bytes: bytes, filename: str
) -> tuple[bytes, str]:
    """The body and Content-Type go-livepeer sends for a multipart route."""
    boundary = secrets.token_hex(30)  # Go's randomBoundary: 30 random bytes, hex
    file_field = "audio" if task == "audio-to-text" else "image"
    parts = [
        (
            f'Content-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + file_bytes
    ]
    for name in FORM_ORDER[task]:
        if name in fields and fields[name] is not None:
            value = go_value(name, fields[name])
            parts.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
    body = b"".join(
        (b"--" if i == 0 else b"\r\n--") + boundary.encode() + b"\r\n" + part for i, part in enumerate(parts)
    )
    body += b"\r\n--" + boundary.encode() + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


def text_to_image_body(fields: Mapping[str, Any]) -> bytes:
    ordered = {name: fields[name] for name in TEXT_TO_IMAGE_ORDER if fields.get(name) is not None}
    if "prompt" not in ordered:
        ordered["prompt"] = ""  # a non-pointer string in the struct: always encoded
    return json.dumps(ordered, separators=(",", ":")).encode()


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def msg(self) -> str:
        return str(self.body["detail"]["msg"])


def judge(status: int, content_type: str, raw: bytes, route: str) -> Any:
    """The body as go-livepeer would decode it, or OrchestratorWouldPanic."""
    if status not in DECODED:
        raise OrchestratorWouldPanic(f"orchestrator would panic: {route} answered {status} {raw[:200]!r}")
    if "json" not in content_type:
        raise OrchestratorWouldPanic(
            f"orchestrator would panic: {route} answered {status} with Content-Type {content_type!r}"
        )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise OrchestratorWouldPanic(f"orchestrator would panic: {route} body is not JSON ({exc})") from None
    if status in (400, 401, 500):
        if not (isinstance(body, dict) and isinstance(body.get("detail"), dict)):
            raise AssertionError(f"{route} {status} body is not {{detail: {{msg}}}}: {body}")
        if not isinstance(body["detail"].get("msg"), str) or not body["detail"]["msg"]:
            raise AssertionError(f"{route} {status} has no message: {body}")
    elif status == 422:
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, list) or not detail:
            raise AssertionError(f"{route} 422 is not FastAPI's list: {body}")
        for entry in detail:
            if not {"type", "loc", "msg"} <= set(entry) or not isinstance(entry["loc"], list):
                raise AssertionError(f"{route} 422 entry is not FastAPI's: {entry}")
    else:
        _check_success(route, body)
    return body


def _check_success(route: str, body: Any) -> None:
    def media(item: Any) -> None:
        assert isinstance(item["url"], str) and item["url"].startswith("data:image/png;base64,"), item
        assert isinstance(item["seed"], int) and isinstance(item["nsfw"], bool), item

    if route in ("text-to-image", "image-to-image", "upscale"):
        assert isinstance(body["images"], list) and body["images"], body
        for item in body["images"]:
            media(item)
    elif route == "image-to-video":
        for video in body["frames"]:
            for frame in video:
                media(frame)
    elif route == "audio-to-text":
        assert isinstance(body["text"], str) and isinstance(body["chunks"], list), body
    elif route == "segment-anything-2":
        assert all(isinstance(body[key], str) for key in ("masks", "scores", "logits")), body
    elif route == "image-to-text":
        assert isinstance(body["text"], str), body


class GoLivepeerClient:
    """Calls a worker's ai-runner routes as go-livepeer's orchestrator does."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, model_id: str, token: str | None = None
    ):
        self.base_url = base_url
        self.session = session
        self.model_id = model_id
        self.token = token

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def call(
        self,
        task: str,
        fields: Mapping[str, Any] | None = None,
        file_bytes: bytes = b"",
        filename: str = "input.png",
        *,
        model_id: str | None = None,
    ) -> Answer:
        values = {"model_id": self.model_id if model_id is None else model_id, **(fields or {})}
        if task == "text-to-image":
            body, content_type = text_to_image_body(values), "application/json"
        else:
            body, content_type = multipart_body(task, values, file_bytes, filename)
        async with self.session.post(
            f"{self.base_url}/{task}", data=body, headers=self._headers(content_type)
        ) as resp:
            raw = await resp.read()
            decoded = judge(resp.status, resp.headers.get("Content-Type", ""), raw, task)
            return Answer(resp.status, decoded, dict(resp.headers))

    async def health(self) -> str:
        async with self.session.get(f"{self.base_url}/health") as resp:
            assert resp.status == 200 and "json" in resp.content_type, resp.status
            return str((await resp.json())["status"])

    async def startup(self) -> dict[str, Any]:
        """What the orchestrator reads at startup after /health: /hardware/info and /version."""
        out: dict[str, Any] = {}
        for path in ("/hardware/info", "/version"):
            async with self.session.get(f"{self.base_url}{path}") as resp:
                assert resp.status == 200 and "json" in resp.content_type, (path, resp.status)
                out[path] = await resp.json()
        return out


def fields_of(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)
