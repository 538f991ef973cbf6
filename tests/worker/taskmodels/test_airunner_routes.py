"""Every ai-runner route with a tiny real-architecture model, through the adapter and the real Triton.

The go-livepeer client double (tests/support/golivepeer.py) sends each request as go-livepeer's
`multipart.go` builds it and judges each answer by go-livepeer's decoding rules; the adapter runs
in this process in front of the session's tritonserver (the `served` fixture: Hub → prefetch →
model-repo → Triton). Images in the answers must be the runtime's own output for the same seed.
"""

from __future__ import annotations

import ast
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.settings import AdapterSettings
from lpbyoc_worker.inference import TritonInference
from lpbyoc_worker.runtimes.backends import TritonTaskBackend
from lpbyoc_worker.runtimes.base import TaskRequest
from PIL import Image

from tests.support.golivepeer import GoLivepeerClient
from tests.support.tiny_transformers import random_image, tone

from .task_cases import MODELS, Served

# The session fixture builds, downloads and loads nine models: minutes on a busy 2-core box.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
MODEL_ID = "tiny/model"


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def from_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture
async def worker(served: Served) -> AsyncIterator[Any]:
    adapters: list[Adapter] = []

    async def start(model: str) -> str:
        task = MODELS[model][1]
        settings = AdapterSettings(
            model_id=MODEL_ID, task=task, pipeline=task, host="127.0.0.1", port=0, ready_poll_seconds=0.1
        )
        backend = TritonTaskBackend(TritonInference(served.grpc_url, model, timeout_s=120), task)
        adapter = Adapter(settings, backend)
        await adapter.start()
        adapters.append(adapter)
        return f"http://127.0.0.1:{adapter.port}"

    start.adapters = adapters  # type: ignore[attr-defined]
    yield start
    for adapter in adapters:
        await adapter.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        yield session


async def ready(client: GoLivepeerClient) -> None:
    """go-livepeer's warm-up: /health until it is not LOADING (bounded), then the startup reads."""
    import asyncio

    for _ in range(600):
        if await client.health() in ("IDLE", "OK"):
            break
        await asyncio.sleep(0.1)
    assert await client.health() == "IDLE"
    startup = await client.startup()
    assert startup["/version"]["model_id"] == MODEL_ID


async def test_image_routes_answer_the_runtimes_own_images(served: Served, worker: Any, http: Any) -> None:
    source = random_image(32, 32, seed=1)
    cases = [
        ("text2img", "text-to-image", {"prompt": "a red fox", "height": 32, "width": 32, "num_inference_steps": 2,
                                       "num_images_per_prompt": 2, "seed": 11}, None),
        ("img2img", "image-to-image", {"prompt": "watercolour", "strength": 0.6, "num_inference_steps": 2,
                                       "seed": 5}, source),
        ("upscale", "upscale", {"prompt": "sharp", "num_inference_steps": 2, "seed": 3}, random_image(16, 16, 2)),
    ]  # fmt: skip
    for model, route, fields, image in cases:
        client = GoLivepeerClient(await worker(model), http, MODEL_ID)
        await ready(client)
        answer = await client.call(route, fields, png(image) if image is not None else b"")
        assert answer.status == 200, answer.body
        params = {k: v for k, v in fields.items() if k != "prompt"} | {"prompt": fields["prompt"]}
        expected = await served.local[model].run(
            TaskRequest(params=answer_params(answer, params), image=image)
        )
        got = np.stack([from_data_url(item["url"]) for item in answer.body["images"]])
        assert [item["seed"] for item in answer.body["images"]] == expected.data["seeds"]
        assert got.shape == expected.tensors["IMAGES"].shape
        assert int(np.abs(got.astype(int) - expected.tensors["IMAGES"].astype(int)).max()) <= 1
        assert answer.headers["X-Safety-Check"] in ("unavailable", "skipped")  # tiny SD has no checker


def answer_params(answer: Any, sent: dict[str, Any]) -> dict[str, Any]:
    """What the adapter passed the runtime: the sent fields plus ai-runner's defaults for the rest."""
    defaults: dict[str, Any] = {"safety_check": True}
    return {**defaults, **sent, "seed": answer.body["images"][0]["seed"]}


async def test_video_caption_sam2_and_speech(worker: Any, http: Any) -> None:
    image = png(random_image(32, 32, seed=3))
    client = GoLivepeerClient(await worker("img2video"), http, MODEL_ID)
    await ready(client)
    answer = await client.call("image-to-video", {"height": 32, "width": 32, "num_inference_steps": 2, "seed": 9},
                               image)  # fmt: skip
    assert answer.status == 200, answer.body
    (video,) = answer.body["frames"]
    assert len(video) >= 2 and from_data_url(video[0]["url"]).shape == (32, 32, 3)

    client = GoLivepeerClient(await worker("caption"), http, MODEL_ID)
    await ready(client)
    answer = await client.call("image-to-text", {}, image)
    assert answer.status == 200 and isinstance(answer.body["text"], str)

    client = GoLivepeerClient(await worker("sam2"), http, MODEL_ID)
    await ready(client)
    answer = await client.call(
        "segment-anything-2", {"point_coords": "[[10, 12]]", "point_labels": "[1]"}, image
    )
    assert answer.status == 200, answer.body
    scores = ast.literal_eval(answer.body["scores"])
    masks = np.array(ast.literal_eval(answer.body["masks"]))
    assert masks.shape[0] == len(scores) and masks.shape[1:] == (32, 32)
    assert scores == sorted(scores, reverse=True)

    client = GoLivepeerClient(await worker("asr"), http, MODEL_ID)
    await ready(client)
    answer = await client.call(
        "audio-to-text", {"return_timestamps": "true"}, wav(tone(1.0)), filename="a.wav"
    )
    assert answer.status == 200, answer.body
    assert isinstance(answer.body["text"], str) and isinstance(answer.body["chunks"], list)


async def test_bad_inputs_are_answers_go_livepeer_can_read(worker: Any, http: Any) -> None:
    client = GoLivepeerClient(await worker("img2img"), http, MODEL_ID)
    await ready(client)
    image = png(random_image(32, 32, seed=1))
    missing = await client.call("image-to-image", {"strength": 0.5}, image)  # no prompt
    assert missing.status == 422 and missing.body["detail"][0]["loc"][-1] == "prompt"
    lora = await client.call("image-to-image", {"prompt": "x", "loras": '{"some/lora": 1.0}'}, image)
    assert lora.status == 400 and "lora" in lora.msg.lower()
    other = await client.call("image-to-image", {"prompt": "x"}, image, model_id="someone/else")
    assert other.status == 400 and "someone/else" in other.msg
    not_an_image = await client.call("image-to-image", {"prompt": "x"}, b"not an image")
    assert not_an_image.status == 400


async def test_depth_over_byoc_is_the_runtimes_depth_map(served: Served, worker: Any, http: Any) -> None:
    url = await worker("depth")
    client = GoLivepeerClient(url, http, MODEL_ID)
    await ready(client)
    image = random_image(40, 48, seed=4)
    body = {"image": base64.b64encode(png(image)).decode(), "params": {"depth_format": "float32"}}
    async with http.post(f"{url}/v1/infer", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    depth = np.frombuffer(base64.b64decode(answer["depth"]["data"]), "<f4").reshape(answer["depth"]["shape"])
    expected = (await served.local["depth"].run(TaskRequest(image=image))).tensors["DEPTH"]
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(depth, expected, atol=1e-4 * scale, rtol=0)


async def test_live_frames_through_triton_are_the_colour_mapped_depth(served: Served, worker: Any) -> None:
    """A live frame through the adapter's frame path and the real Triton: the runtime's depth, colour-mapped."""
    import torch
    from lpbyoc_worker.adapter.livetasks import colorize_depth
    from pytrickle.frames import VideoFrame

    await worker("depth")
    (adapter,) = [a for a in worker.adapters if a.settings.task == "depth-estimation"]
    await adapter.readiness.wait_model_ready()
    image = random_image(40, 48, seed=8)
    frame = VideoFrame.from_tensor(torch.from_numpy(image[None].astype(np.float32) / 255.0), timestamp=0)
    result = await adapter.processor.process_video_async(frame)
    assert result is not None
    got = (result.tensor[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pixels = (frame.tensor[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    depth = (await served.local["depth"].run(TaskRequest(image=pixels))).tensors["DEPTH"]
    expected = colorize_depth(depth, "turbo")
    assert got.shape == expected.shape == (40, 48, 3)
    assert int(np.abs(got.astype(int) - expected.astype(int)).max()) <= 1
