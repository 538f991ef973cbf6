"""JSON schemas of the BYOC job endpoint, published at `GET /v1/schema` and enforced on input."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from .errors import RequestError

JOB_PATH = "/v1/infer"

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "InferRequest",
    "description": (
        "JSON body of POST /v1/infer. The same endpoint also takes the image itself as the body "
        "(Content-Type image/png or image/jpeg), or a raw little-endian float32 NCHW tensor "
        "(Content-Type application/octet-stream with header X-Tensor-Shape: 1,3,H,W)."
    ),
    "type": "object",
    "properties": {
        "image": {
            "type": "string",
            "minLength": 1,
            "description": "base64 PNG or JPEG, RGB; a data: URL is accepted too",
        },
        "params": {
            "type": "object",
            "properties": {
                "format": {
                    "enum": ["png", "jpeg"],
                    "default": "png",
                    "description": "encoding of the output image",
                },
            },
            "additionalProperties": False,
        },
    },
    "required": ["image"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "InferResponse",
    "description": (
        "JSON answer of POST /v1/infer. With Accept: image/png or image/jpeg the answer is the "
        "image itself; with Accept: application/octet-stream it is the raw float32 output tensor "
        'with its shape in X-Tensor-Shape. Errors are {"detail": {"msg": ...}}.'
    ),
    "type": "object",
    "properties": {
        "image": {"type": "string", "description": "base64 output image"},
        "content_type": {"enum": ["image/png", "image/jpeg"]},
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "model_id": {"type": "string"},
        "capability": {"type": "string"},
        "timings": {
            "type": "object",
            "properties": {
                name: {"type": "number", "minimum": 0}
                for name in ("decode_ms", "triton_ms", "encode_ms", "total_ms")
            },
            "required": ["decode_ms", "triton_ms", "encode_ms", "total_ms"],
        },
    },
    "required": ["image", "content_type", "width", "height", "model_id", "timings"],
}

_INPUT_VALIDATOR = Draft202012Validator(INPUT_SCHEMA)


def published_schema() -> dict[str, Any]:
    return {"path": JOB_PATH, "method": "POST", "input": INPUT_SCHEMA, "output": OUTPUT_SCHEMA}


def validate_job_input(body: Any) -> dict[str, Any]:
    """Check a JSON job body against INPUT_SCHEMA; the first violation becomes a 422 message."""
    error = next(iter(sorted(_INPUT_VALIDATOR.iter_errors(body), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "body"
        raise RequestError(422, f"Invalid request at {where}: {error.message}.")
    assert isinstance(body, dict)
    return body
