"""BYOC jobs and the ai-runner image route end to end: adapter → real Triton → TorchScript model."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import aiohttp
import numpy as np
import pytest
import torch
from lpbyoc_worker.adapter.imaging import ImageLimits
from PIL import Image

from tests.support.triton import RunningTriton

from .harness import MODEL_ID, AdapterFactory


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def reference(triton: RunningTriton, pixels: np.ndarray) -> np.ndarray:
    """The TorchScript module called directly on the same (1, 3, H, W) float input."""
    batch = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32)[None] / 255.0)
    with torch.no_grad():
        return triton.module()(batch).numpy()


async def test_raw_output_equals_torchscript_module(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    running = await start_adapter()
    await running.wait_ready()
    pixels = random_rgb(48, 64, seed=1)
    async with http.post(
        f"{running.url}/v1/infer",
        data=png(pixels),
        headers={"Content-Type": "image/png", "Accept": "application/octet-stream"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        shape = tuple(int(x) for x in resp.headers["X-Tensor-Shape"].split(","))
        assert "triton;dur=" in resp.headers["Server-Timing"]
        output = np.frombuffer(await resp.read(), dtype="<f4").reshape(shape)
    expected = reference(triton_server, pixels)
    assert output.shape == expected.shape == (1, 3, 48, 64)
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-6)


async def test_json_job_returns_png_matching_module(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    running = await start_adapter()
    await running.wait_ready()
    pixels = random_rgb(160, 200, seed=2)  # over 64 KiB: codecs run in a worker thread
    body = {"image": base64.b64encode(png(pixels)).decode(), "params": {"format": "png"}}
    async with http.post(f"{running.url}/v1/infer", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert answer["content_type"] == "image/png" and answer["model_id"] == MODEL_ID
    assert (answer["width"], answer["height"]) == (200, 160)
    assert answer["timings"]["triton_ms"] > 0
    assert answer["timings"]["total_ms"] >= answer["timings"]["triton_ms"]
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))).convert("RGB"))
    expected = np.rint(reference(triton_server, pixels)[0].transpose(1, 2, 0) * 255)
    # PNG is lossless: only the float → uint8 rounding separates them.
    assert np.abs(out.astype(np.float64) - expected).max() <= 1


async def test_binary_body_with_image_accept_and_jpeg(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter()
    await running.wait_ready()
    jpeg = io.BytesIO()
    Image.fromarray(random_rgb(16, 16, seed=3)).save(jpeg, format="JPEG")
    async with http.post(
        f"{running.url}/v1/infer",
        data=jpeg.getvalue(),
        headers={"Content-Type": "image/jpeg", "Accept": "image/png"},
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        assert Image.open(io.BytesIO(await resp.read())).size == (16, 16)
    async with http.post(
        f"{running.url}/v1/infer",
        json={"image": base64.b64encode(png(random_rgb(8, 8))).decode(), "params": {"format": "jpeg"}},
    ) as resp:
        answer = await resp.json()
        assert answer["content_type"] == "image/jpeg"
        assert base64.b64decode(answer["image"]).startswith(b"\xff\xd8\xff")


async def test_schema_is_published(start_adapter: AdapterFactory, http: aiohttp.ClientSession) -> None:
    running = await start_adapter()
    async with http.get(f"{running.url}/v1/schema") as resp:
        schema = await resp.json()
    assert schema["path"] == "/v1/infer"
    assert schema["input"]["properties"]["image"]["type"] == "string"
    assert "timings" in schema["output"]["required"]


BAD_INPUTS = [
    # (content type, body, status, message fragment)
    ("text/plain", b"hello", 415, "Unsupported Content-Type 'text/plain'"),
    ("application/json", b"{not json", 400, "Body is not valid JSON"),
    (
        "application/json",
        json.dumps({"image": "@@not base64@@"}).encode(),
        400,
        "'image' is not valid base64",
    ),
    (
        "application/json",
        json.dumps({"image": base64.b64encode(b"GIF89a").decode()}).encode(),
        400,
        "neither PNG nor JPEG",
    ),
    ("application/json", json.dumps({"img": "x"}).encode(), 422, "'image' is a required property"),
    (
        "application/json",
        json.dumps({"image": "aGk=", "params": {"steps": 3}}).encode(),
        422,
        "Additional properties are not allowed",
    ),
    ("image/png", png(random_rgb(8, 8))[:40], 400, "could not be decoded"),
    ("image/png", png(np.zeros((8, 8), np.uint8), "L"), 422, "1 channel(s)"),
    ("image/png", png(np.zeros((8, 8, 4), np.uint8), "RGBA"), 422, "4 channel(s)"),
    ("image/png", png(np.zeros((8, 300, 3), np.uint8)), 422, "largest side allowed is 256"),
    ("application/octet-stream", b"\x00" * 16, 400, "X-Tensor-Shape"),
]


@pytest.mark.parametrize(("content_type", "body", "status", "fragment"), BAD_INPUTS)
async def test_bad_input_gets_specific_4xx(
    start_adapter: AdapterFactory,
    http: aiohttp.ClientSession,
    content_type: str,
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    running = await start_adapter(limits=ImageLimits(max_side=256))
    await running.wait_ready()
    async with http.post(
        f"{running.url}/v1/infer", data=body, headers={"Content-Type": content_type}
    ) as resp:
        answer = await resp.json()
        assert resp.status == status, answer
    assert fragment in answer["detail"]["msg"]
    assert "Traceback" not in answer["detail"]["msg"]


async def test_oversized_body_is_413_declared_or_streamed(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter(max_body_bytes=2048)
    body = png(random_rgb(64, 64))
    assert len(body) > 2048
    async with http.post(f"{running.url}/v1/infer", data=body, headers={"Content-Type": "image/png"}) as resp:
        assert resp.status == 413
        assert "limit is 2048" in (await resp.json())["detail"]["msg"]

    async def chunks():  # no Content-Length: the limit must hold while reading
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with http.post(
        f"{running.url}/v1/infer", data=chunks(), headers={"Content-Type": "image/png"}
    ) as resp:
        assert resp.status == 413
        assert "exceeds the limit of 2048" in (await resp.json())["detail"]["msg"]


async def test_capacity_exceeded_is_503_with_retry_after(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter(gated=True, capacity=2)
    await running.wait_ready()
    image = png(random_rgb(8, 8))

    async def job() -> int:
        async with http.post(
            f"{running.url}/v1/infer", data=image, headers={"Content-Type": "image/png"}
        ) as r:
            await r.read()
            return r.status

    held = [asyncio.create_task(job()) for _ in range(2)]
    await running.backend.wait_for_waiting(2)
    async with http.post(
        f"{running.url}/v1/infer", data=image, headers={"Content-Type": "image/png"}
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert "at capacity (2 concurrent requests)" in (await resp.json())["detail"]["msg"]
    running.backend.release.set()
    assert await asyncio.gather(*held) == [200, 200]
    async with http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    assert 'lpbyoc_adapter_requests_total{outcome="503",route="/v1/infer"} 1.0' in text
    assert 'lpbyoc_adapter_requests_total{outcome="200",route="/v1/infer"} 2.0' in text


async def test_bearer_token(start_adapter: AdapterFactory, http: aiohttp.ClientSession) -> None:
    running = await start_adapter(auth_token="s3cret")
    await running.wait_ready()
    image = png(random_rgb(8, 8))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        async with http.post(
            f"{running.url}/v1/infer", data=image, headers={"Content-Type": "image/png", **headers}
        ) as resp:
            assert resp.status == 401
            assert (await resp.json()) == {"detail": {"msg": "Invalid bearer token."}}
    good = {"Authorization": "Bearer s3cret"}
    async with http.post(
        f"{running.url}/v1/infer", data=image, headers={"Content-Type": "image/png", **good}
    ) as resp:
        assert resp.status == 200
    # A bad request with a good token is that request's error, never a 401.
    async with http.post(
        f"{running.url}/v1/infer", data=b"x", headers={"Content-Type": "text/plain", **good}
    ) as resp:
        assert resp.status == 415
    async with http.get(f"{running.url}/stream/status") as resp:
        assert resp.status == 401
    for path in ("/stream/start", "/live-video-to-video"):
        async with http.post(
            f"{running.url}{path}", json={}, headers={"Authorization": "Bearer nope"}
        ) as resp:
            assert resp.status == 401, path
    # ai-runner routes validate first (FastAPI), then check the token, and say Bearer.
    form = aiohttp.FormData()
    form.add_field("prompt", "x")
    form.add_field("image", image, filename="in.png", content_type="image/png")
    async with http.post(
        f"{running.url}/image-to-image", data=form, headers={"Authorization": "Bearer nope"}
    ) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    async with http.post(
        f"{running.url}/image-to-image", json={}, headers={"Authorization": "Bearer nope"}
    ) as resp:
        assert resp.status == 422
    for path in ("/health", "/ready", "/healthz", "/metrics", "/version", "/v1/schema"):
        async with http.get(f"{running.url}{path}") as resp:
            assert resp.status == 200, path


async def test_image_to_image_shape_and_model_id(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    running = await start_adapter()
    await running.wait_ready()
    pixels = random_rgb(24, 24, seed=5)

    def form(model_id: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("prompt", "anything")
        data.add_field("model_id", model_id)
        data.add_field("seed", "7")
        data.add_field("image", png(pixels), filename="in.png", content_type="image/png")
        return data

    async with http.post(f"{running.url}/image-to-image", data=form(MODEL_ID)) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert list(answer) == ["images"] and len(answer["images"]) == 1
    media = answer["images"][0]
    assert media["seed"] == 7 and media["nsfw"] is False
    assert media["url"].startswith("data:image/png;base64,")
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(media["url"].partition(",")[2]))))
    expected = np.rint(reference(triton_server, pixels)[0].transpose(1, 2, 0) * 255)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1

    async with http.post(f"{running.url}/image-to-image", data=form("someone/else")) as resp:
        assert resp.status == 400
        assert (await resp.json())["detail"]["msg"] == (
            f"pipeline configured with {MODEL_ID} but called with someone/else."
        )
    # Not a form: FastAPI finds the required fields missing (422), never a 415 go-livepeer cannot read.
    async with http.post(f"{running.url}/image-to-image", json={"prompt": "x"}) as resp:
        assert resp.status == 422
        assert [e["loc"] for e in (await resp.json())["detail"]] == [["body", "prompt"], ["body", "image"]]


async def test_health_version_hardware(start_adapter: AdapterFactory, http: aiohttp.ClientSession) -> None:
    running = await start_adapter(pipeline="image-to-image")
    await running.wait_ready()
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{running.url}/health") as resp:
                status = (await resp.json())["status"]
            if status != "LOADING":
                break
            await asyncio.sleep(0.05)
    assert status == "IDLE"
    async with http.get(f"{running.url}/version") as resp:
        version = await resp.json()
    assert version["pipeline"] == "image-to-image" and version["model_id"] == MODEL_ID
    for path in ("/hardware/info", "/hardware/stats"):
        async with http.get(f"{running.url}{path}") as resp:
            assert resp.status == 200
            assert (await resp.json())["model_id"] == MODEL_ID
    async with http.get(f"{running.url}/registration") as resp:
        assert resp.status == 404


async def test_image_to_image_body_limit_and_missing_image(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter(max_body_bytes=4096)
    big = aiohttp.FormData()
    big.add_field("prompt", "x")
    big.add_field("image", png(random_rgb(64, 64)), filename="in.png", content_type="image/png")
    async with http.post(f"{running.url}/image-to-image", data=big) as resp:
        assert resp.status == 400  # not 413: go-livepeer cannot decode a 413 on this route
        assert "4096" in (await resp.json())["detail"]["msg"]
    no_image = aiohttp.FormData()
    no_image.add_field("prompt", "x")
    no_image.add_field("image", "not a file")
    async with http.post(f"{running.url}/image-to-image", data=no_image) as resp:
        assert resp.status == 422
        (problem,) = (await resp.json())["detail"]
        assert problem["loc"] == ["body", "image"] and problem["type"] == "value_error"


async def test_concurrent_jobs_all_succeed_with_their_own_results(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    """Capacity-many jobs at once each get the answer for their own image (no mixed-up buffers).

    160² random PNGs are over 64 KiB, so decoding and encoding run in worker threads here."""
    running = await start_adapter(capacity=6)
    await running.wait_ready()
    images = [random_rgb(160, 160, seed=100 + i) for i in range(6)]

    async def job(pixels: np.ndarray) -> np.ndarray:
        async with http.post(
            f"{running.url}/v1/infer",
            data=png(pixels),
            headers={"Content-Type": "image/png", "Accept": "application/octet-stream"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            return np.frombuffer(await resp.read(), dtype="<f4").reshape(1, 3, 160, 160)

    for _ in range(3):
        outputs = await asyncio.gather(*(job(pixels) for pixels in images))
        for pixels, output in zip(images, outputs, strict=True):
            np.testing.assert_allclose(output, reference(triton_server, pixels), rtol=0, atol=1e-6)
