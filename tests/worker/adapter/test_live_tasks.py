"""Live video on a task worker: frames through the real task runtimes (tiny real models, in-process).

The frame functions are checked three ways: unit tests of the colour map, palette and overlay;
each frame the processor draws equals the frame function applied to the runtime's own output for
that frame; and end to end through pytrickle and the trickle server, where every published frame
is one of those drawings (after one more H.264 pass) and a /stream/params update changes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
import torch
from lpbyoc_worker.adapter import livetasks as lt
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.live import TaskFrameProcessor
from lpbyoc_worker.adapter.settings import AdapterSettings
from lpbyoc_worker.runtimes.backends import LocalTaskBackend
from lpbyoc_worker.runtimes.base import Device, Runtime, TaskRequest, TaskResult
from lpbyoc_worker.runtimes.registry import load_runtime
from PIL import Image
from pytrickle.frames import VideoFrame
from pytrickle.publisher import TricklePublisher

from tests.support import tiny_diffusers, tiny_transformers

from .standins import standin_backend
from .test_live import FRAMES_PER_SEGMENT, SIZE, decode_ts, encode_segments, marker_frame
from .trickle_server import TrickleServer

MODEL_ID = "lpbyoc-test/live-task"
COARSE = 16
WAIT_S = 180  # generous: a loaded 2-core box runs the tiny models many times slower than usual


# --- the colour map, palette and overlay ---------------------------------------------------------


@pytest.mark.parametrize("name", lt.COLORMAPS)
def test_colour_maps_are_256_entry_gradients(name: str) -> None:
    lut = lt.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    if name == "turbo":
        # dark, then blue, green, red, dark red: the rainbow order read as near-to-far
        assert [int(np.argmax(lut[i])) for i in (40, 128, 215)] == [2, 1, 0]
        assert lut[0].max() < 80 and lut[255].max() < 160
    else:
        luminance = lut.astype(np.float64) @ [0.299, 0.587, 0.114]
        assert np.all(np.diff(luminance) >= -1), name  # perceptual maps only get brighter (± rounding)
    assert len({tuple(c) for c in lut}) > 100  # a gradient, not a few bands


def test_gray_is_the_identity_ramp() -> None:
    assert np.array_equal(lt.colormap_lut("gray"), np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1))


def test_depth_is_normalised_per_frame_min_to_first_entry_max_to_last() -> None:
    depth = np.array([[2.0, 3.0], [4.0, 6.0]], np.float32)
    assert lt.depth_indices(depth).tolist() == [[0, 64], [128, 255]]
    assert lt.depth_indices(depth * 10 + 7).tolist() == [[0, 64], [128, 255]]  # scale and offset free
    assert lt.depth_indices(depth, invert=True).tolist() == [[255, 191], [127, 0]]
    lut = lt.colormap_lut("inferno")
    assert np.array_equal(lt.colorize_depth(depth, "inferno"), lut[[[0, 64], [128, 255]]])


def test_flat_or_non_finite_depth_does_not_break_the_frame() -> None:
    assert lt.depth_indices(np.full((3, 4), 5.0, np.float32)).tolist() == [[0] * 4] * 3
    assert lt.depth_indices(np.array([[np.nan, 1.0, np.inf, 3.0]])).tolist() == [[0, 0, 0, 255]]
    assert lt.depth_indices(np.full((2, 2), np.nan)).tolist() == [[0, 0], [0, 0]]


def test_label_palette_is_the_voc_palette_fixed_per_id_and_distinct() -> None:
    ids = np.arange(512)
    colours = lt.label_palette(ids)
    assert colours.dtype == np.uint8 and colours.shape == (512, 3)
    assert [tuple(colours[i]) for i in (0, 1, 2, 3, 15)] == [
        (0, 0, 0),
        (128, 0, 0),
        (0, 128, 0),
        (128, 128, 0),
        (192, 128, 128),  # VOC "person"
    ]
    assert len({tuple(c) for c in colours}) == 512
    assert np.array_equal(lt.label_palette(ids.reshape(16, 32)), colours.reshape(16, 32, 3))
    assert np.array_equal(lt.label_palette(np.array([-3])), lt.label_palette(np.array([0])))


def test_overlay_blends_each_label_colour_at_alpha() -> None:
    image = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    labels = np.arange(30, dtype=np.int32).reshape(6, 5) % 4
    colours = lt.label_palette(labels).astype(np.float64)
    assert np.array_equal(lt.overlay_labels(image, labels, 0.0), image)
    assert np.array_equal(lt.overlay_labels(image, labels, 1.0), colours.astype(np.uint8))
    half = np.round(0.75 * image + 0.25 * colours).astype(np.uint8)
    assert np.abs(lt.overlay_labels(image, labels, 0.25).astype(int) - half).max() <= 1


# --- parameters --------------------------------------------------------------------------------------


def test_each_live_task_has_complete_defaults_that_pass_its_own_checks() -> None:
    assert set(lt.LIVE) == set(lt.LIVE_TASKS)
    for live in lt.LIVE.values():
        assert live.validate({}) == dict(live.defaults)
        assert live.validate(None) == dict(live.defaults)
    i2i = lt.IMAGE_TO_IMAGE.validate({})
    assert i2i["num_inference_steps"] * i2i["strength"] >= 1 and i2i["guidance_scale"] == 0.0
    assert isinstance(i2i["seed"], int)


@pytest.mark.parametrize(
    ("task", "update", "field", "words"),
    [
        ("image-to-image", {"strength": 0}, "strength", "(0.0, 1.0]"),
        ("image-to-image", {"strength": 1.5}, "strength", "(0.0, 1.0]"),
        ("image-to-image", {"strength": "0.5"}, "strength", "number"),
        ("image-to-image", {"num_inference_steps": 5}, "num_inference_steps", "1..4"),
        ("image-to-image", {"num_inference_steps": 1}, "num_inference_steps", "x strength"),
        ("image-to-image", {"prompt": 3}, "prompt", "string"),
        ("image-to-image", {"prompt": "x" * 2001}, "prompt", "at most 2000"),
        ("image-to-image", {"seed": -1}, "seed", "integer"),
        ("image-to-image", {"guidance_scale": float("nan")}, "guidance_scale", "number"),
        ("image-to-image", {"safety_check": "yes"}, "safety_check", "true or false"),
        ("image-to-image", {"promt": "a cat"}, "promt", "not a live parameter of image-to-image"),
        ("depth-estimation", {"colormap": "jet"}, "colormap", "turbo, inferno, viridis, gray"),
        ("depth-estimation", {"invert": 1}, "invert", "true or false"),
        ("image-segmentation", {"alpha": 1.5}, "alpha", "[0.0, 1.0]"),
        ("image-segmentation", {"prompt": "a"}, "prompt", "not a live parameter"),
        ("image-segmentation", {"width": 64, "height": 0}, "height", "1..4096"),
        ("depth-estimation", {"max_framerate": 61}, "max_framerate", "1..60"),
    ],
)
def test_bad_params_name_the_field(task: str, update: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(lt.LiveParamError) as caught:
        lt.LIVE[task].validate(update)
    assert caught.value.field == field and field in caught.value.msg and words in caught.value.msg


def test_updates_apply_over_the_current_params_and_null_restores_the_default() -> None:
    live = lt.IMAGE_TO_IMAGE
    current = live.validate({"prompt": "a cat", "strength": 1.0, "width": SIZE, "height": SIZE})
    updated = live.validate({"num_inference_steps": 1, "seed": 7.0}, current)
    assert updated["prompt"] == "a cat" and updated["num_inference_steps"] == 1 and updated["seed"] == 7
    assert live.validate({"prompt": None}, updated)["prompt"] == ""
    assert live.runtime_params(updated) == {k: updated[k] for k in live.runtime_keys}
    assert "width" not in live.runtime_params(updated)
    assert lt.DEPTH_ESTIMATION.runtime_params(lt.DEPTH_ESTIMATION.validate({})) == {}


# --- each frame is the frame function of the runtime's output ------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the tiny models gain nothing from two on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Runtime]:
    root = tmp_path_factory.mktemp("live-models")
    snapshots = {
        "image-to-image": tiny_diffusers.save_tiny_sd(root / "sd"),
        "depth-estimation": tiny_transformers.build_depth_anything(root / "depth"),
        "image-segmentation": tiny_transformers.build_segformer(root / "segformer"),
    }
    return {task: load_runtime(task, path, Device("cpu")) for task, path in snapshots.items()}


class RecordingBackend:
    """The runtime in-process (LocalTaskBackend), keeping each request and its result."""

    def __init__(self, runtime: Runtime) -> None:
        self.inner = LocalTaskBackend(runtime)
        self.task = runtime.task
        self.calls: list[tuple[TaskRequest, TaskResult]] = []

    async def run(self, request: TaskRequest) -> TaskResult:
        result = await self.inner.run(request)
        self.calls.append((request, result))
        return result

    async def is_model_ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def expected_frame(task: str, image: np.ndarray, result: TaskResult, params: dict[str, Any]) -> np.ndarray:
    """What the frame should be, computed here from the runtime's output (not by the adapter)."""
    h, w = image.shape[:2]
    if task == "image-to-image":
        first = result.tensors["IMAGES"][0]
        if first.shape[:2] == (h, w):
            return first
        return np.asarray(Image.fromarray(first).resize((w, h), Image.Resampling.BICUBIC))
    if task == "depth-estimation":
        depth = result.tensors["DEPTH"].astype(np.float64)
        assert depth.shape == (h, w)
        index = np.round((depth - depth.min()) / (depth.max() - depth.min()) * 255).astype(np.uint8)
        return lt.colormap_lut(params["colormap"])[255 - index if params["invert"] else index]
    labels = result.tensors["LABELS"]
    assert labels.shape == (h, w)
    blended = (1 - params["alpha"]) * image + params["alpha"] * lt.label_palette(labels).astype(np.float64)
    return np.round(blended).astype(np.uint8)


def adapter_for(task: str, backend: Any, **overrides: Any) -> Adapter:
    settings = AdapterSettings(
        **{
            "model_id": MODEL_ID,
            "task": task,
            "pipeline": "live-video-to-video",
            "host": "127.0.0.1",
            "port": 0,
            "ready_poll_seconds": 0.05,
            **overrides,
        }
    )
    return Adapter(settings, backend)


def as_frame(image: np.ndarray) -> VideoFrame:
    """The frame pytrickle's decoder hands over: (1, H, W, 3) float32 in [0, 1]."""
    return VideoFrame.from_tensor(torch.from_numpy(image.astype(np.float32) / 255.0).unsqueeze(0))


def frame_pixels(frame: VideoFrame) -> np.ndarray:
    """The processor's output as pytrickle's encoder turns it into pixels (x255, truncated)."""
    return (frame.tensor[0] * 255.0).clamp(0, 255).to(torch.uint8).numpy()


LIVE_UPDATES: dict[str, dict[str, Any]] = {
    "image-to-image": {"prompt": "a red fox", "seed": 7},
    "depth-estimation": {"colormap": "gray", "invert": True},
    "image-segmentation": {"alpha": 1.0},
}


@pytest.mark.parametrize(("task", "height", "width"), [
    ("image-to-image", 40, 56),
    ("image-to-image", 44, 61),  # not multiples of 8: the pipeline's output is resized back
    ("depth-estimation", 36, 52),
    ("image-segmentation", 30, 47),
])  # fmt: skip
async def test_each_frame_is_the_frame_function_of_the_runtimes_output(
    runtimes: dict[str, Runtime], task: str, height: int, width: int
) -> None:
    backend = RecordingBackend(runtimes[task])
    processor = adapter_for(task, backend).processor
    assert isinstance(processor, TaskFrameProcessor)
    image = tiny_transformers.random_image(height, width, seed=3)
    await processor.on_stream_start({"width": width, "height": height})
    before = await processor.process_video_async(as_frame(image))
    await processor.update_params(LIVE_UPDATES[task])
    after = await processor.process_video_async(as_frame(image))
    assert before is not None and after is not None
    frames = [frame_pixels(before), frame_pixels(after)]
    for frame, (request, result) in zip(frames, backend.calls, strict=True):
        assert frame.shape == (height, width, 3)
        assert request.image is not None and np.array_equal(
            request.image, image
        )  # reached the runtime unchanged
        params = lt.LIVE[task].validate(dict(request.params) if task == "image-to-image" else {})
        if frame is frames[1]:
            params = {**params, **LIVE_UPDATES[task]}
        # float32 x/255 then x255 truncated can lose one level; nothing more.
        assert np.abs(frame.astype(int) - expected_frame(task, image, result, params)).max() <= 1
    assert not np.array_equal(frames[0], frames[1])  # the update changed the output
    if task == "image-to-image":
        sent = [dict(request.params) for request, _ in backend.calls]
        assert sent[0] == {k: lt.IMAGE_TO_IMAGE.defaults[k] for k in lt.IMAGE_TO_IMAGE.runtime_keys}
        assert sent[1] == {**sent[0], **LIVE_UPDATES[task]}
    assert processor.processed == 2


async def test_a_frame_the_runtime_refuses_is_left_out_and_counted(runtimes: dict[str, Runtime]) -> None:
    """A 4x4 frame is below the diffusion pipeline's minimum side: that frame fails, the next one runs."""
    adapter = adapter_for("image-to-image", RecordingBackend(runtimes["image-to-image"]))
    processor = adapter.processor
    await processor.on_stream_start({})
    assert await processor.process_video_async(as_frame(np.zeros((4, 4, 3), np.uint8))) is None
    assert await processor.process_video_async(as_frame(np.zeros((16, 16, 3), np.uint8))) is not None
    assert processor.processed == 1
    assert 'lpbyoc_adapter_frames_total{outcome="failed"} 1.0' in adapter.metrics.render().decode()


async def test_a_bad_control_channel_update_keeps_the_current_params() -> None:
    processor = adapter_for("depth-estimation", standin_backend("depth-estimation")).processor
    await processor.on_stream_start({"colormap": "inferno"})
    await processor.update_params({"colormap": "jet"})
    assert processor.params["colormap"] == "inferno"


# --- over HTTP: start refused for non-live tasks, bad params 400 -----------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as session:
        yield session


@pytest.fixture
async def start() -> AsyncIterator[Any]:
    started: list[Adapter] = []

    async def factory(task: str, backend: Any, **overrides: Any) -> tuple[Adapter, str]:
        adapter = adapter_for(task, backend, **overrides)
        await adapter.start()
        started.append(adapter)
        await asyncio.wait_for(adapter.readiness.wait_model_ready(), WAIT_S)
        return adapter, f"http://127.0.0.1:{adapter.port}"

    yield factory
    for adapter in started:
        await adapter.close()


@pytest.fixture
async def trickle() -> AsyncIterator[TrickleServer]:
    server = TrickleServer()
    await server.start()
    yield server
    await server.stop()


def start_body(trickle: TrickleServer, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway_request_id": "req-1",
        "subscribe_url": trickle.create("in"),
        "publish_url": trickle.create("out"),
        "params": params,
    }


@pytest.mark.parametrize("task", ["audio-to-text", "text-to-image", "segment-anything-2"])
@pytest.mark.parametrize("path", ["/stream/start", "/live-video-to-video"])
async def test_a_task_without_a_live_form_is_refused_at_start(
    start: Any, http: aiohttp.ClientSession, trickle: TrickleServer, task: str, path: str
) -> None:
    adapter, url = await start(task, standin_backend(task))
    async with http.post(f"{url}{path}", json=start_body(trickle, {})) as resp:
        assert resp.status == 400
        msg = (await resp.json())["detail"]["msg"]
    assert task in msg and all(live in msg for live in lt.LIVE_TASKS)
    assert adapter.stream_server.current_client is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colormap": "jet"}, "colormap"),
        ({"invert": "no"}, "invert"),
        ({"strength": 0.5}, "strength"),  # an image-to-image key on a depth worker
        ({"width": 64}, "height"),
    ],
)
async def test_bad_params_at_start_answer_400_naming_the_field(
    start: Any, http: aiohttp.ClientSession, trickle: TrickleServer, body: dict[str, Any], field: str
) -> None:
    adapter, url = await start("depth-estimation", standin_backend("depth-estimation"))
    async with http.post(f"{url}/stream/start", json=start_body(trickle, body)) as resp:
        assert resp.status == 400, await resp.text()
        assert field in (await resp.json())["detail"]["msg"]
    assert adapter.stream_server.current_client is None


async def test_a_non_json_start_body_answers_400(start: Any, http: aiohttp.ClientSession) -> None:
    _, url = await start("image-segmentation", standin_backend("image-segmentation"))
    async with http.post(
        f"{url}/stream/start", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400 and "JSON object" in (await r.json())["detail"]["msg"]


# --- end to end through pytrickle ---------------------------------------------------------------------


async def wait_until(predicate: Any, what: str) -> None:
    """Poll `predicate` (cheap) until true; the only bound is WAIT_S, no pacing is assumed."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if predicate():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def publish_segments(
    publisher: TricklePublisher, trickle: TrickleServer, segments: list[bytes], first: int
) -> None:
    for seq, data in enumerate(segments, start=first):
        writer = await publisher.next()
        await writer.write(data)
        await writer.close()
        await trickle.wait_for_complete("in", seq)


def record_renders(processor: TaskFrameProcessor) -> list[tuple[np.ndarray, dict[str, Any], np.ndarray]]:
    """Wrap the processor's `render` to keep (input image, params, drawn frame) of every frame."""
    records: list[tuple[np.ndarray, dict[str, Any], np.ndarray]] = []
    original = processor.render

    async def render(image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        drawn = await original(image, params)
        records.append((image, dict(params), drawn))
        return drawn

    processor.render = render  # type: ignore[method-assign]
    return records


def coarse(pixels: np.ndarray) -> np.ndarray:
    """Block means on a COARSE x COARSE grid: what an H.264 pass keeps of a noisy picture."""
    return cv2.resize(pixels, (COARSE, COARSE), interpolation=cv2.INTER_AREA).astype(np.float64)


def closest(output: np.ndarray, drawn: list[np.ndarray]) -> tuple[int, float]:
    """The drawn frame an output frame is (after the encoder's resize and one more H.264 pass)."""
    errors = [float(np.abs(coarse(output) - coarse(d)).mean()) for d in drawn]
    best = int(np.argmin(errors))
    return best, errors[best]


@pytest.mark.slow
@pytest.mark.parametrize("task", lt.LIVE_TASKS)
async def test_a_live_stream_through_the_task_with_a_params_update(
    start: Any, http: aiohttp.ClientSession, trickle: TrickleServer, runtimes: dict[str, Runtime], task: str
) -> None:
    backend = RecordingBackend(runtimes[task])
    # No frame dropped: every input frame is drawn, so the output can be matched to the drawings.
    adapter, url = await start(task, backend, max_pending_frames=10_000)
    processor = adapter.processor
    assert isinstance(processor, TaskFrameProcessor)
    records = record_renders(processor)
    body = start_body(trickle, {"width": SIZE, "height": SIZE})
    async with http.post(f"{url}/stream/start", json=body) as resp:
        assert resp.status == 200, await resp.text()
    await trickle.wait_for_reader("in")
    segments = encode_segments([marker_frame(i) for i in range(4 * FRAMES_PER_SEGMENT)])

    publisher = TricklePublisher(body["subscribe_url"], "video/mp2t")
    await publisher.start()
    try:
        await publish_segments(publisher, trickle, segments[:2], first=0)
        await wait_until(lambda: len(records) >= 4, "frames drawn with the start params")
        # The backlog is the adapter's drop-newest picker, as on the TorchScript path.
        assert adapter.stream_server.current_client.frame_skipper is processor.picker
        async with http.post(f"{url}/stream/params", json={"bogus": 1}) as resp:
            assert resp.status == 400 and "bogus" in (await resp.json())["detail"]["msg"]
        async with http.post(
            f"{url}/stream/params", data=b"[1]", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
        async with http.post(f"{url}/stream/params", json=LIVE_UPDATES[task]) as resp:
            assert resp.status == 200, await resp.text()
        updated_at = len(records)
        assert all(processor.params[k] == v for k, v in LIVE_UPDATES[task].items())
        await publish_segments(publisher, trickle, segments[2:], first=2)
        await wait_until(lambda: len(records) >= updated_at + 4, "frames drawn with the new params")
        outputs: list[np.ndarray] = []

        def enough_outputs() -> bool:
            outputs[:] = decode_ts(b"".join(trickle.segment_data("out")))
            return len(outputs) > updated_at + 1

        await wait_until(enough_outputs, "published frames after the update")
    finally:
        await publisher.close()

    drawn = [record[2] for record in records]
    old, new = records[0][1], records[-1][1]
    assert all(old[k] == lt.LIVE[task].defaults[k] for k in LIVE_UPDATES[task])
    assert all(new[k] == v for k, v in LIVE_UPDATES[task].items())
    # Every drawing is the frame function of the runtime's output, at the input's size.
    for (image, params, frame), (request, result) in zip(records, backend.calls, strict=True):
        assert image.shape == frame.shape == (SIZE, SIZE, 3) and request.image is image
        assert np.abs(frame.astype(int) - expected_frame(task, image, result, params)).max() == 0
    # Every published frame is one of the drawings; the last ones were drawn with the new params.
    matches = [closest(output, drawn) for output in outputs]
    assert all(error < 6 for _, error in matches), matches
    assert any(records[index][1] == new for index, _ in matches[-1:])
    # And the update changed the picture: the same input under the old params looks different.
    image, _, frame = records[-1]
    request = TaskRequest(params=lt.LIVE[task].runtime_params(old), image=image)
    before = lt.LIVE[task].render(image, await backend.inner.run(request), old)
    assert np.abs(before.astype(int) - frame.astype(int)).mean() > 3
