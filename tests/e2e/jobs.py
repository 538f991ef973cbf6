"""BYOC job requests as the e2e suite sends them: straight to the worker Service (what the
orchestrator forwards after stripping /process/request/), and the gateway's `Livepeer` header."""

from __future__ import annotations

import base64
import json
from typing import Any

import cv2
import numpy as np

JOB_PATH = "/v1/infer"


def sample_png(width: int = 32, height: int = 24) -> bytes:
    """A small RGB gradient; a constant image would hide a model that drops the input."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=-1)
    ok, encoded = cv2.imencode(".png", rgb.astype(np.uint8)[:, :, ::-1])  # OpenCV wants BGR
    if not ok:
        raise RuntimeError("OpenCV could not encode the test image")
    return encoded.tobytes()


def worker_job(
    png: bytes, token: str | None, output_format: str = "png"
) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of a JSON BYOC job for the worker adapter."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"image": base64.b64encode(png).decode(), "params": {"format": output_format}}
    return JOB_PATH, headers, json.dumps(body).encode()


def livepeer_header(
    capability: str, request: dict[str, Any], parameters: dict[str, Any], timeout_seconds: int
) -> str:
    """The gateway's `Livepeer` header: base64 of JSON whose request/parameters are JSON strings."""
    payload = {
        "request": json.dumps(request),
        "parameters": json.dumps(parameters),
        "capability": capability,
        "timeout_seconds": timeout_seconds,
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def check_job_answer(status: int, body: bytes, capability: str, size: tuple[int, int]) -> dict[str, Any]:
    """Assert a /v1/infer answer is a real result for `capability` at the input size."""
    assert status == 200, f"job answered {status}: {body[:500]!r}"
    answer = json.loads(body)
    assert answer.get("content_type") == "image/png", answer
    assert (answer.get("width"), answer.get("height")) == size, answer
    image = base64.b64decode(answer["image"])
    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (size[1], size[0]), (
        "output is not a PNG of the input size"
    )
    if "capability" in answer:
        assert answer["capability"] == capability, answer
    return answer
