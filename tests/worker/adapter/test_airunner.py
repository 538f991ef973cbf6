"""The ai-runner routes of task workers, driven by the go-livepeer client double.

Backends are stand-in runtimes (standins.py) in-process: these tests are about what the adapter
answers over HTTP, and that go-livepeer can decode every answer (the double fails otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from lpbyoc_worker import __version__
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.readiness import IncompatibleModel
from lpbyoc_worker.adapter.settings import AdapterSettings
from PIL import Image

from tests.support.golivepeer import GoLivepeerClient, OrchestratorWouldPanic, judge, multipart_body

from .standins import DownBackend, GatedBackend, standin_backend

MODEL_ID = "lpbyoc-test/stand-in"


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """Pillow infers the mode from the array: HxWx4 RGBA, HxW uint8 L, HxW uint16 I;16."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def rgb(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def decode_url(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).convert("RGB"))


def wav(seconds: float = 0.5, rate: int = 22_050) -> bytes:
    """A stereo MP3-free container PyAV writes: WAV (pcm_s16le) at 22.05 kHz."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        samples = (np.sin(np.linspace(0, 200, int(seconds * rate))) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.stack([samples, samples]).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture
async def start() -> AsyncIterator[Any]:
    started: list[Adapter] = []

    async def factory(task: str, backend: Any = None, **overrides: Any) -> tuple[Adapter, str]:
        settings = AdapterSettings(
            **{
                "model_id": MODEL_ID,
                "task": task,
                "pipeline": task,
                "host": "127.0.0.1",
                "port": 0,
                "ready_poll_seconds": 0.05,
                **overrides,
            }
        )
        adapter = Adapter(settings, backend or standin_backend(task))
        await adapter.start()
        started.append(adapter)
        if not isinstance(backend, DownBackend):
            await asyncio.wait_for(adapter.readiness.wait_model_ready(), 20)
        return adapter, f"http://127.0.0.1:{adapter.port}"

    yield factory
    for adapter in started:
        await adapter.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def test_text_to_image_n_images_with_seed_plus_i(start: Any, http: aiohttp.ClientSession) -> None:
    adapter, url = await start("text-to-image")
    client = GoLivepeerClient(url, http, MODEL_ID)
    answer = await client.call(
        "text-to-image",
        {"prompt": "a cat", "height": 64, "width": 32, "seed": 41, "num_images_per_prompt": 3},
    )
    assert answer.status == 200
    images = answer.body["images"]
    assert [m["seed"] for m in images] == [41, 42, 43] and [m["nsfw"] for m in images] == [False] * 3
    assert [int(decode_url(m["url"])[0, 0, 0]) for m in images] == [41, 42, 43]
    assert decode_url(images[0]["url"]).shape == (64, 32, 3)
    assert answer.headers["X-Safety-Check"] == "checked"
    # Defaults: ai-runner's (576x1024, 50 steps, guidance 7.5, safety on), a random seed always set.
    answer = await client.call("text-to-image", {"prompt": "a dog"})
    assert decode_url(answer.body["images"][0]["url"]).shape == (576, 1024, 3)
    calls = adapter.pipeline_routes.backend.runtime.calls  # type: ignore[union-attr]
    last = calls[-1]
    assert (last["num_inference_steps"], last["guidance_scale"], last["safety_check"]) == (50, 7.5, True)
    assert isinstance(last["seed"], int) and answer.body["images"][0]["seed"] == last["seed"]
    # The checker flags, and the client learns it.
    flagged = await client.call("text-to-image", {"prompt": "nsfw", "height": 8, "width": 8})
    assert flagged.body["images"][0]["nsfw"] is True


async def test_text_to_image_bad_inputs_are_decodable(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("text-to-image", max_images_per_prompt=4)
    client = GoLivepeerClient(url, http, MODEL_ID)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"prompt": "x", "height": 100, "width": 64}, 400, "divisible by 8"),
        ({"prompt": "x", "num_images_per_prompt": 5}, 422, "less than or equal to 4"),
        ({"prompt": "x", "num_images_per_prompt": 0}, 422, "greater than or equal to 1"),
        ({"prompt": "x", "seed": -1}, 422, "greater than or equal to 0"),
        ({"prompt": "x", "loras": "not json"}, 400, "Unable to parse 'not json' as JSON."),
        (
            {"prompt": "x", "loras": '{"nerijs/pixel-art-xl": 1.2}', "height": 8, "width": 8},
            400,
            "nerijs/pixel-art-xl",
        ),
        (
            {"prompt": "x", "seed": 2**32 - 1, "num_images_per_prompt": 2, "height": 8, "width": 8},
            400,
            "seed + i",
        ),
    ]
    for fields, status, fragment in cases:
        answer = await client.call("text-to-image", fields)
        assert answer.status == status, (fields, answer.body)
        text = json.dumps(answer.body)
        assert fragment in text, (fields, answer.body)
    mismatch = await client.call("text-to-image", {"prompt": "x"}, model_id="other/model")
    assert (
        mismatch.status == 400
        and mismatch.msg == f"pipeline configured with {MODEL_ID} but called with other/model."
    )
    # Bodies go-livepeer would never send, still answered decodably.
    for body, content_type in (
        (b"{nope", "application/json"),
        (b"[1]", "application/json"),
        (b"", "text/plain"),
    ):
        async with http.post(
            f"{url}/text-to-image", data=body, headers={"Content-Type": content_type}
        ) as resp:
            decoded = judge(resp.status, resp.content_type, await resp.read(), "text-to-image")
            assert resp.status == 422, decoded
    async with http.post(
        f"{url}/text-to-image", json={"prompt": 3, "seed": "x", "safety_check": "maybe"}
    ) as resp:
        detail = judge(resp.status, resp.content_type, await resp.read(), "text-to-image")["detail"]
        assert [(d["loc"], d["type"]) for d in detail] == [
            (["body", "prompt"], "string_type"),
            (["body", "safety_check"], "bool_parsing"),
            (["body", "seed"], "int_parsing"),
        ]


async def test_trailing_slash_and_auth(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("text-to-image", auth_token="s3cret")
    async with http.post(
        f"{url}/text-to-image/",
        json={"prompt": "x", "height": 8, "width": 8, "model_id": MODEL_ID},
        headers={"Authorization": "Bearer s3cret"},
    ) as resp:
        assert resp.status == 200
    bad = GoLivepeerClient(url, http, MODEL_ID, token="wrong")
    answer = await bad.call("text-to-image", {"prompt": "x"})
    assert answer.status == 401 and answer.msg == "Invalid bearer token."
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    # Validation comes first, as in FastAPI.
    async with http.post(f"{url}/text-to-image", json={}, headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 422


async def test_image_routes_accept_any_pillow_image(start: Any, http: aiohttp.ClientSession) -> None:
    adapter, url = await start("image-to-image")
    client = GoLivepeerClient(url, http, MODEL_ID)
    pixels = rgb(12, 20)
    grey16 = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 250).astype(np.uint16)
    inputs = {
        "rgb.png": png(pixels),
        "rgba.png": png(np.dstack([pixels, np.full((12, 20), 128, np.uint8)])),
        "l.png": png(np.ascontiguousarray(pixels[:, :, 0])),
        "p.gif": png(pixels, fmt="GIF"),
        "rgb.webp": png(pixels, fmt="WEBP"),
        "16bit.png": png(grey16),
        "rgb.jpg": png(pixels, fmt="JPEG"),
    }
    for name, data in inputs.items():
        answer = await client.call(
            "image-to-image",
            {"prompt": "x", "strength": 0.5, "safety_check": True, "seed": 9, "num_images_per_prompt": 2},
            data,
            filename=name,
        )
        assert answer.status == 200, (name, answer.body)
        out = decode_url(answer.body["images"][0]["url"])
        assert out.shape == (12, 20, 3), name
        assert [m["seed"] for m in answer.body["images"]] == [9, 10]
    np.testing.assert_array_equal(
        decode_url(
            (await client.call("image-to-image", {"prompt": "x"}, inputs["rgb.png"])).body["images"][0]["url"]
        ),
        255 - pixels,
    )
    # %f floats arrive as 0.500000 and parse; the model has no checker and the header says so.
    calls = adapter.pipeline_routes.backend.runtime.calls  # type: ignore[union-attr]
    assert calls[0]["strength"] == 0.5 and calls[-1]["strength"] == 0.8
    answer = await client.call("image-to-image", {"prompt": "x"}, inputs["rgb.png"])
    assert answer.headers["X-Safety-Check"] == "unavailable"
    answer = await client.call("image-to-image", {"prompt": "x", "safety_check": False}, inputs["rgb.png"])
    assert answer.headers["X-Safety-Check"] == "skipped"
    for data, fragment in ((b"not an image", "could not be decoded"), (b"", "empty")):
        answer = await client.call("image-to-image", {"prompt": "x"}, data)
        assert answer.status == 400 and fragment in answer.msg
    answer = await client.call("image-to-image", {"prompt": "x", "strength": 1.5}, inputs["rgb.png"])
    assert answer.status == 422 and answer.body["detail"][0]["loc"] == ["body", "strength"]
    answer = await client.call("image-to-image", {}, inputs["rgb.png"])
    assert answer.status == 422 and answer.body["detail"][0]["type"] == "missing"


async def test_body_limit_is_400_not_413(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("upscale", max_body_bytes=2048)
    client = GoLivepeerClient(url, http, MODEL_ID)
    answer = await client.call("upscale", {"prompt": "x"}, png(rgb(64, 64)))
    assert answer.status == 400 and "limit is 2048" in answer.msg


async def test_upscale_video_caption_sam2(start: Any, http: aiohttp.ClientSession) -> None:
    image = png(rgb(16, 24))
    _, url = await start("upscale")
    answer = await GoLivepeerClient(url, http, MODEL_ID).call("upscale", {"prompt": "x", "seed": 3}, image)
    assert decode_url(answer.body["images"][0]["url"]).shape == (32, 48, 3)
    assert answer.body["images"][0]["seed"] == 3

    _, url = await start("image-to-video")
    answer = await GoLivepeerClient(url, http, MODEL_ID).call(
        "image-to-video", {"height": 64, "width": 128, "fps": 8, "noise_aug_strength": 0.1, "seed": 5}, image
    )
    (video,) = answer.body["frames"]
    assert len(video) == 3 and {f["seed"] for f in video} == {5}
    assert decode_url(video[2]["url"]).shape == (64, 128, 3)

    _, url = await start("image-to-text")
    answer = await GoLivepeerClient(url, http, MODEL_ID).call("image-to-text", {"prompt": "see: "}, image)
    assert answer.body == {"text": "see: a 24x16 picture"}

    _, url = await start("segment-anything-2")
    client = GoLivepeerClient(url, http, MODEL_ID)
    answer = await client.call(
        "segment-anything-2", {"point_coords": "[[4, 5]]", "point_labels": "[1]"}, image
    )
    assert answer.status == 200
    scores = eval(answer.body["scores"])  # ai-runner's encoding: str(list)
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    masks = np.array(eval(answer.body["masks"]))
    assert masks.shape == (3, 16, 24) and masks[0, 0, 0] == 2.0  # best score first
    assert np.array(eval(answer.body["logits"])).shape == (3, 256, 256)
    answer = await client.call("segment-anything-2", {"multimask_output": False}, image)
    assert len(eval(answer.body["scores"])) == 1
    for fields, fragment in (
        ({"point_coords": "[[1,"}, "Error parsing JSON for point_coords"),
        ({"mask_input": "[[0]]"}, "mask_input is not supported"),
    ):
        answer = await client.call("segment-anything-2", fields, image)
        assert answer.status == 400 and fragment in answer.msg


async def test_audio_to_text_decodes_any_container(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("audio-to-text")
    client = GoLivepeerClient(url, http, MODEL_ID)
    answer = await client.call("audio-to-text", {}, wav(0.5), filename="speech.wav")
    assert answer.status == 200
    assert answer.body == {
        "text": "0.5 seconds",
        "chunks": [{"timestamp": [0.0, 0.5], "text": "0.5 seconds"}],
    }
    answer = await client.call("audio-to-text", {"return_timestamps": "false"}, wav(0.25), filename="a.wav")
    assert answer.body["chunks"] == []
    answer = await client.call("audio-to-text", {}, b"definitely not audio", filename="a.mp3")
    assert answer.status == 400 and answer.msg == "Unsupported audio format or malformed file."
    answer = await client.call("audio-to-text", {"return_timestamps": "char"}, wav(0.1), filename="a.wav")
    assert answer.status == 400 and "return_timestamps" in answer.msg


async def test_overload_queues_then_answers_500_never_503(start: Any, http: aiohttp.ClientSession) -> None:
    gated = GatedBackend(standin_backend("image-to-text"))
    _, url = await start("image-to-text", backend=gated, capacity=2, queue_size=2, queue_timeout=30)
    client = GoLivepeerClient(url, http, MODEL_ID)
    image = png(rgb(8, 8))
    calls = [asyncio.create_task(client.call("image-to-text", {}, image)) for _ in range(4)]
    await gated.wait_for_waiting(2)  # 2 running, 2 queued
    async with asyncio.timeout(20):
        while True:
            async with http.get(f"{url}/metrics") as resp:
                if "lpbyoc_adapter_in_flight 2.0" in await resp.text():
                    break
            await asyncio.sleep(0.02)
    assert await client.health() == "OK"
    # The queue is full: the fifth request is told so, decodably.
    extra = await client.call("image-to-text", {}, image)
    assert extra.status == 500 and "at capacity" in extra.msg
    gated.release.set()
    answers = await asyncio.gather(*calls)
    assert [a.status for a in answers] == [200] * 4
    assert await client.health() == "IDLE"


async def test_queue_timeout_is_500_with_message(start: Any, http: aiohttp.ClientSession) -> None:
    gated = GatedBackend(standin_backend("image-to-text"))
    _, url = await start("image-to-text", backend=gated, capacity=1, queue_size=4, queue_timeout=0.2)
    client = GoLivepeerClient(url, http, MODEL_ID)
    held = asyncio.create_task(client.call("image-to-text", {}, png(rgb(8, 8))))
    await gated.wait_for_waiting(1)
    late = await client.call("image-to-text", {}, png(rgb(8, 8)))
    assert late.status == 500 and "No capacity became free within 0.2 s" in late.msg
    gated.release.set()
    assert (await held).status == 200


async def test_drain_finishes_in_flight_and_refuses_with_500(start: Any, http: aiohttp.ClientSession) -> None:
    gated = GatedBackend(standin_backend("image-to-text"))
    adapter, url = await start("image-to-text", backend=gated, capacity=2, drain_seconds=10)
    client = GoLivepeerClient(url, http, MODEL_ID)
    in_flight = asyncio.create_task(client.call("image-to-text", {}, png(rgb(8, 8))))
    await gated.wait_for_waiting(1)
    drain = asyncio.create_task(adapter.drain())
    async with asyncio.timeout(10):
        while not adapter.readiness.draining:  # noqa: ASYNC110 (polling state under test)
            await asyncio.sleep(0.01)
    refused = await client.call("image-to-text", {}, png(rgb(8, 8)))
    assert refused.status == 500 and "shutting down" in refused.msg
    assert not drain.done()
    gated.release.set()
    assert (await in_flight).status == 200
    assert await asyncio.wait_for(drain, 10) is True


async def test_triton_down_is_500_and_health_reports_it(start: Any, http: aiohttp.ClientSession) -> None:
    down = DownBackend("image-to-text", ready=False)
    adapter, url = await start("image-to-text", backend=down)
    client = GoLivepeerClient(url, http, MODEL_ID)
    assert await client.health() == "LOADING"  # never ready yet: go-livepeer keeps waiting
    answer = await client.call("image-to-text", {}, png(rgb(8, 8)))
    assert answer.status == 500 and answer.msg.startswith("The inference server is unavailable")
    down.ready = True
    await asyncio.wait_for(adapter.readiness.wait_model_ready(), 10)
    assert await client.health() == "IDLE"
    down.ready = False
    async with asyncio.timeout(10):
        while await client.health() != "ERROR":  # was ready, Triton gone: ERROR, not IDLE  # noqa: ASYNC110 (polling state under test)
            await asyncio.sleep(0.02)


async def test_version_hardware_and_startup_reads(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("segment-anything-2")
    client = GoLivepeerClient(url, http, MODEL_ID)
    read = await client.startup()
    assert read["/version"] == {
        "pipeline": "segment-anything-2",
        "model_id": MODEL_ID,
        "version": __version__,
    }
    assert read["/hardware/info"]["model_id"] == MODEL_ID and isinstance(
        read["/hardware/info"]["gpu_info"], dict
    )
    for path in ("/health/", "/version/", "/hardware/stats", "/hardware/stats/"):
        async with http.get(f"{url}{path}") as resp:
            assert resp.status == 200 and "json" in resp.content_type, path


async def test_wrong_task_model_is_fatal(start: Any, http: aiohttp.ClientSession) -> None:
    async def verify() -> None:
        raise IncompatibleModel("--task image-to-text: Triton model 'model' serves task 'upscale'")

    settings = AdapterSettings(
        model_id=MODEL_ID, task="image-to-text", host="127.0.0.1", port=0, ready_poll_seconds=0.05
    )
    adapter = Adapter(settings, standin_backend("image-to-text"), verify=verify)
    await adapter.start()
    try:
        await asyncio.wait_for(adapter.readiness.fatal_event.wait(), 10)
        assert "serves task 'upscale'" in (adapter.readiness.fatal or "")
        client = GoLivepeerClient(f"http://127.0.0.1:{adapter.port}", http, MODEL_ID)
        assert await client.health() == "ERROR"
        assert not adapter.readiness.model_ready
    finally:
        await adapter.close()


@pytest.mark.parametrize(
    ("task", "payload", "key"),
    [
        ("image-to-image", {"params": {"prompt": "x", "seed": 4}}, "images"),
        ("depth-estimation", {"params": {"depth_format": "float32"}}, "depth"),
        ("depth-estimation", {}, "depth"),
        ("image-segmentation", {}, "segmentation"),
        ("segment-anything-2", {"params": {"point_coords": "[[1, 1]]"}}, "masks"),
        ("image-to-text", {}, "text"),
    ],
)
async def test_byoc_infer_per_task_schema(
    start: Any, http: aiohttp.ClientSession, task: str, payload: dict[str, Any], key: str
) -> None:
    _, url = await start(task, pipeline="live-video-to-video")
    body = {"image": base64.b64encode(png(rgb(8, 10))).decode(), **payload}
    async with http.post(f"{url}/v1/infer", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    async with http.get(f"{url}/v1/schema") as resp:
        schema = await resp.json()
    assert schema["schema"] == answer["schema"] == "lpbyoc.task.v1" and schema["task"] == task
    import jsonschema

    jsonschema.validate(body, schema["input"])
    jsonschema.validate(answer, schema["output"])
    assert key in answer and answer["task"] == task
    if task == "depth-estimation" and payload:
        depth = np.frombuffer(base64.b64decode(answer["depth"]["data"]), "<f4").reshape(
            answer["depth"]["shape"]
        )
        assert depth.shape == (8, 10) and depth[0, -1] == pytest.approx(3.0)
    if task == "depth-estimation" and not payload:
        png16 = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["depth"]["data"]))))
        assert png16.dtype == np.uint16 and int(png16[0, -1]) == 65535 and int(png16[0, 0]) == 0
    async with http.post(f"{url}/v1/infer", json={**body, "extra": 1}) as resp:
        assert resp.status == 422


async def test_byoc_infer_triton_down_keeps_byoc_semantics(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("image-to-text", backend=DownBackend("image-to-text", ready=False))
    body = {"image": base64.b64encode(png(rgb(8, 8))).decode()}
    async with http.post(f"{url}/v1/infer", json=body) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"


def test_double_builds_requests_as_multipart_go() -> None:
    body, content_type = multipart_body(
        "image-to-image",
        {
            "prompt": "p",
            "model_id": "m",
            "strength": 0.8,
            "safety_check": False,
            "seed": 7,
            "negative_prompt": None,
        },
        b"IMG",
        "in.png",
    )
    boundary = content_type.split("boundary=")[1]
    assert len(boundary) == 60
    parts = body.split(b"--" + boundary.encode())
    assert b'name="image"; filename="in.png"\r\nContent-Type: application/octet-stream\r\n\r\nIMG' in parts[1]
    names = [p.split(b'name="')[1].split(b'"')[0].decode() for p in parts[1:-1]]
    assert names == ["image", "prompt", "model_id", "strength", "safety_check", "seed"]
    assert b"\r\n\r\n0.800000\r\n" in body and b"\r\n\r\nfalse\r\n" in body
    assert body.endswith(b"--" + boundary.encode() + b"--\r\n")
    with pytest.raises(OrchestratorWouldPanic, match="orchestrator would panic"):
        judge(503, "application/json", b'{"detail": {"msg": "busy"}}', "image-to-image")
    with pytest.raises(OrchestratorWouldPanic, match="orchestrator would panic"):
        judge(500, "text/plain", b"500 Internal Server Error", "image-to-image")
