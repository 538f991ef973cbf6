"""Live video end to end: pytrickle's publisher → trickle server → adapter (decode → Triton →
encode) → trickle server, decoded here and compared with the TorchScript module frame by frame."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from fractions import Fraction

import aiohttp
import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pytrickle.publisher import TricklePublisher

from tests.support.triton import RunningTriton

from .harness import AdapterFactory, RunningAdapter
from .trickle_server import TrickleServer

SIZE = 128
BLOCK = 16
GRID = SIZE // BLOCK  # 8x8 positions: frame i lights block i
FPS = 12
SEGMENTS = 4
FRAMES_PER_SEGMENT = 12


def marker_frame(index: int) -> np.ndarray:
    """Dark frame with one bright block whose position encodes the frame index."""
    pixels = np.full((SIZE, SIZE, 3), (40, 60, 80), np.uint8)
    row, col = divmod(index, GRID)
    pixels[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = (230, 210, 190)
    return pixels


def marker_index(pixels: np.ndarray) -> int:
    blocks = pixels.astype(np.float64).reshape(GRID, BLOCK, GRID, BLOCK, 3)
    # Middle of each block only: the 3x3 conv blurs the edges.
    means = blocks[:, 4:-4, :, 4:-4, :].mean(axis=(1, 3, 4))
    return int(np.argmax(np.abs(means - np.median(means)).reshape(-1)))


def encode_segments(frames: list[np.ndarray]) -> list[bytes]:
    """One continuous H.264 MPEG-TS stream cut into trickle segments at keyframes, as a gateway sends."""
    buf = io.BytesIO()
    segments: list[bytes] = []
    with av.open(buf, mode="w", format="mpegts") as container:
        stream = container.add_stream(
            "libx264",
            rate=FPS,
            options={"tune": "zerolatency", "preset": "ultrafast", "g": str(FRAMES_PER_SEGMENT), "crf": "12"},
        )
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
            if (index + 1) % FRAMES_PER_SEGMENT == 0:
                segments.append(buf.getvalue()[sum(map(len, segments)) :])
        for packet in stream.encode():
            container.mux(packet)
    tail = buf.getvalue()[sum(map(len, segments)) :]
    if tail:
        segments[-1] += tail
    return segments


def decode_ts(data: bytes) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    if not data:
        return frames
    try:
        with av.open(io.BytesIO(data), format="mpegts") as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError:
        pass  # a segment still being written ends mid-packet
    return frames


TS_PACKET = 188


@pytest.fixture
async def trickle() -> AsyncIterator[TrickleServer]:
    server = TrickleServer()
    await server.start()
    yield server
    await server.stop()


async def start_stream(http: aiohttp.ClientSession, running: RunningAdapter, trickle: TrickleServer) -> str:
    subscribe_url, publish_url = trickle.create("in"), trickle.create("out")
    start = {
        "gateway_request_id": "req-1",
        "subscribe_url": subscribe_url,
        "publish_url": publish_url,
        "params": {"width": SIZE, "height": SIZE},
    }
    async with http.post(f"{running.url}/stream/start", json=start) as resp:
        assert resp.status == 200, await resp.text()
    # The subscriber asks for the *next* segment (-2): publish once it is waiting for it.
    await trickle.wait_for_reader("in")
    return subscribe_url


async def publish(trickle: TrickleServer, url: str, segments: list[bytes], *, paced: bool) -> None:
    """Through pytrickle's own publisher; paced = each segment's bytes spread over its frames' duration."""
    publisher = TricklePublisher(url, "video/mp2t")
    await publisher.start()
    try:
        for seq, data in enumerate(segments):
            writer = await publisher.next()
            piece = -(-len(data) // FRAMES_PER_SEGMENT // TS_PACKET) * TS_PACKET if paced else len(data)
            for offset in range(0, len(data), piece):
                await writer.write(data[offset : offset + piece])
                if paced:
                    await asyncio.sleep(1 / FPS)
            await writer.close()
            await trickle.wait_for_complete("in", seq)  # the publisher POSTs in the background
    finally:
        await publisher.close()


async def collect(trickle: TrickleServer, at_least: int) -> list[np.ndarray]:
    outputs: list[np.ndarray] = []
    async with asyncio.timeout(30):
        while len(outputs) < at_least:
            await asyncio.sleep(0.2)
            outputs = decode_ts(b"".join(trickle.segment_data("out")))
    return outputs


def check_outputs(
    outputs: list[np.ndarray], segments: list[bytes], module: torch.jit.ScriptModule
) -> list[int]:
    """Each output frame is the module's output for one input frame; frames keep their order."""
    # pytrickle 0.1.6 with av 14 encodes at libx264's default 640x480 whatever the frame size
    # (its `video_size` option is ignored) and resizes each frame with PIL's LANCZOS first.
    out_size = (outputs[0].shape[1], outputs[0].shape[0])
    matched = [marker_index(cv2.resize(out, (SIZE, SIZE), interpolation=cv2.INTER_AREA)) for out in outputs]
    assert matched == sorted(matched) and len(set(matched)) == len(matched), matched
    # What the adapter decoded is what we decode: compare with the module on those frames.
    inputs = decode_ts(b"".join(segments))
    for out, index in zip(outputs, matched, strict=True):
        batch = torch.from_numpy(inputs[index].transpose(2, 0, 1).astype(np.float32)[None] / 255.0)
        with torch.no_grad():
            result = (module(batch)[0].permute(1, 2, 0) * 255).byte().numpy()
        expected = np.asarray(Image.fromarray(result).resize(out_size, Image.LANCZOS), dtype=np.float64)
        # The output went through H.264 once more: a few levels of error on average.
        assert np.abs(out.astype(np.float64) - expected).mean() < 4
    return matched


async def test_frames_go_through_triton_and_come_back_in_order(
    start_adapter: AdapterFactory,
    http: aiohttp.ClientSession,
    triton_server: RunningTriton,
    trickle: TrickleServer,
) -> None:
    running = await start_adapter(pipeline="live-video-to-video")
    await running.wait_ready()
    url = await start_stream(http, running, trickle)
    segments = encode_segments([marker_frame(i) for i in range(SEGMENTS * FRAMES_PER_SEGMENT)])
    await publish(trickle, url, segments, paced=True)
    outputs = await collect(trickle, at_least=20)
    check_outputs(outputs, segments, triton_server.module())

    async with http.get(f"{running.url}/stream/status") as resp:
        assert (await resp.json())["client_active"] is True
    async with http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    processed = running.adapter.processor.processed
    assert processed >= len(outputs)
    assert f'lpbyoc_adapter_frames_total{{outcome="processed"}} {float(processed)}' in text
    assert 'lpbyoc_adapter_triton_seconds_count{route="live"}' in text

    async with http.post(f"{running.url}/stream/params", json={"strength": 0.5}) as resp:
        assert resp.status == 200
    assert running.adapter.processor.params["strength"] == 0.5
    async with http.post(f"{running.url}/stream/stop", json={}) as resp:
        assert resp.status == 200
    async with http.get(f"{running.url}/stream/status") as resp:
        assert (await resp.json())["client_active"] is False


async def test_frames_that_cannot_keep_up_are_dropped_not_queued(
    start_adapter: AdapterFactory,
    http: aiohttp.ClientSession,
    triton_server: RunningTriton,
    trickle: TrickleServer,
) -> None:
    """The model is held (gated) while every input frame arrives: all but the newest two are dropped."""
    running = await start_adapter(pipeline="live-video-to-video", gated=True, max_pending_frames=2)
    await running.wait_ready()
    url = await start_stream(http, running, trickle)
    segments = encode_segments([marker_frame(i) for i in range(SEGMENTS * FRAMES_PER_SEGMENT)])
    await running.backend.wait_for_waiting(0)
    await publish(trickle, url, segments, paced=False)
    await running.backend.wait_for_waiting(1)
    await asyncio.sleep(1.0)  # the decoder queues the rest behind the held frame
    running.backend.release.set()
    outputs = await collect(trickle, at_least=3)
    matched = check_outputs(outputs, segments, triton_server.module())
    picker = running.adapter.processor.picker
    assert picker.dropped >= SEGMENTS * FRAMES_PER_SEGMENT // 2, (picker.dropped, matched)
    assert running.adapter.processor.processed + picker.dropped <= SEGMENTS * FRAMES_PER_SEGMENT
    async with http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    assert f"lpbyoc_adapter_queue_drops_total {float(picker.dropped)}" in text
    assert f'lpbyoc_adapter_frames_total{{outcome="dropped"}} {float(picker.dropped)}' in text
