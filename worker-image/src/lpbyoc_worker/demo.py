"""`lpbyoc-worker demo`: the worker pod on loopback with Hugging Face models, no cluster.

Builds two random-weight models of the real architectures on the spot (lpbyoc_worker.samples): a
Stable Diffusion pipeline (diffusers layout) and Depth Anything (transformers layout), lays them out
as prefetched snapshots, generates their Triton models with `model-repo`'s code, starts a real
`tritonserver` and one adapter per model, then sends what go-livepeer and a BYOC client send: an
ai-runner `/image-to-image` form (same seed twice → the same image), a bad request, a BYOC depth
job, live frames through the depth model, the startup reads; prints results and timings and shuts
everything down.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from socket import socket

import aiohttp
import numpy as np
import torch
from PIL import Image
from pytrickle.frames import VideoFrame

from lpbyoc_worker import samples
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.settings import AdapterSettings
from lpbyoc_worker.inference import TritonInference
from lpbyoc_worker.modelrepo.layout import generate
from lpbyoc_worker.modelrepo.serving import TritonServing
from lpbyoc_worker.runtimes.backends import TritonTaskBackend
from lpbyoc_worker.tritonproc import TritonOptions, TritonServer

# (Triton model name, Hub-style repo, commit, task, builder)
DEMO_MODELS = (
    ("img2img", "lpbyoc-demo/tiny-sd", "d" * 40, "image-to-image", samples.build_sd_pipeline),
    ("depth", "lpbyoc-demo/tiny-depth-anything", "e" * 40, "depth-estimation", samples.build_depth_anything),
)
MODEL_ID = "lpbyoc-demo/tiny-sd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=64, help="side of the demo image and frames")
    parser.add_argument("--jobs", type=int, default=3, help="BYOC depth jobs to send")
    parser.add_argument("--frames", type=int, default=4, help="live frames to send")


def free_port() -> int:
    with closing(socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_image(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    return (np.stack([x, y, 1 - x * y], axis=-1) * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def step(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.2f}s] {message}", flush=True)


@contextmanager
def demo_triton(workdir: Path, started: float) -> Iterator[TritonServer]:
    """Snapshots → Triton task models → a real tritonserver on free loopback ports."""
    for name, repo, sha, task, build in DEMO_MODELS:
        snapshot = samples.as_cached_snapshot(workdir / "cache", build(workdir / "build" / name), repo, sha)
        generated = generate(
            snapshot, workdir / "models", TritonServing(), model_name=name, kind="KIND_CPU", task=task
        )
        step(
            f"{repo}: {generated.model_format} {generated.class_name} → Triton model '{name}' ({task})",
            started,
        )
    triton = TritonServer(
        TritonOptions(
            model_repository=workdir / "models",
            models=tuple(name for name, *_ in DEMO_MODELS),
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
        ),
        runtime_dir=workdir / "triton",
    )
    try:
        triton.start(300.0)
        step(f"tritonserver ready with both models: gRPC {triton.grpc_url}", started)
        yield triton
    finally:
        triton.close()
        step("tritonserver stopped", started)


def image_form(pixels: np.ndarray, fields: dict[str, str]) -> aiohttp.FormData:
    """The multipart form go-livepeer sends to /image-to-image (file part `image`, fields as text)."""
    form = aiohttp.FormData()
    form.add_field("image", png_bytes(pixels), filename="input.png", content_type="application/octet-stream")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def image_to_image(http: aiohttp.ClientSession, url: str, pixels: np.ndarray, started: float) -> None:
    async with http.get(f"{url}/health") as resp:
        step(f"GET /health → {resp.status} {await resp.json()}", started)
    async with http.get(f"{url}/version") as resp:
        step(f"GET /version → {resp.status} {await resp.json()}", started)
    fields = {"prompt": "a watercolour fox", "model_id": MODEL_ID, "strength": "0.600000",
              "num_inference_steps": "2", "guidance_scale": "0.000000", "seed": "42"}  # fmt: skip
    images = []
    for attempt in range(2):
        t0 = time.perf_counter()
        async with http.post(f"{url}/image-to-image", data=image_form(pixels, fields)) as resp:
            answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"/image-to-image failed: {resp.status} {answer}")
        (item,) = answer["images"]
        images.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(item["url"].split(",", 1)[1])))))
        step(
            f"POST /image-to-image #{attempt + 1} → 200, {images[-1].shape[1]}x{images[-1].shape[0]} PNG data URL, "
            f"seed {item['seed']}, nsfw {item['nsfw']}, safety check {resp.headers.get('X-Safety-Check')}, "
            f"{(time.perf_counter() - t0) * 1e3:.0f} ms",
            started,
        )
    step(f"same seed, same image: {bool(np.array_equal(images[0], images[1]))}", started)
    missing = {k: v for k, v in fields.items() if k != "prompt"}
    async with http.post(f"{url}/image-to-image", data=image_form(pixels, missing)) as resp:
        step(f"no prompt → {resp.status} {await resp.json()}", started)


async def depth_jobs(
    http: aiohttp.ClientSession, url: str, pixels: np.ndarray, count: int, started: float
) -> None:
    body = {"image": base64.b64encode(png_bytes(pixels)).decode()}
    totals = []
    for index in range(count):
        t0 = time.perf_counter()
        async with http.post(f"{url}/v1/infer", json=body) as resp:
            answer = await resp.json()
        totals.append((time.perf_counter() - t0) * 1e3)
        if resp.status != 200:
            raise RuntimeError(f"depth job failed: {resp.status} {answer}")
        if index == 0:
            depth = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["depth"]["data"]))))
            step(
                f"POST /v1/infer (depth) → 200, {answer['schema']}, depth map {depth.shape[1]}x{depth.shape[0]} "
                f"{depth.dtype} PNG, values {int(depth.min())}..{int(depth.max())}",
                started,
            )
    step(f"{count} depth jobs: client round trip p50 {statistics.median(totals):.1f} ms", started)
    not_an_image = base64.b64encode(b"not an image").decode()
    async with http.post(f"{url}/v1/infer", json={"image": not_an_image}) as resp:
        step(f"bad input → {resp.status} {await resp.json()}", started)


async def live_frames(adapter: Adapter, size: int, count: int, started: float) -> None:
    times = []
    for index in range(count):
        tensor = torch.from_numpy(demo_image(size)[None].astype(np.float32) / 255.0).roll(index * 4, dims=2)
        t0 = time.perf_counter()
        result = await adapter.processor.process_video_async(VideoFrame.from_tensor(tensor, timestamp=index))
        times.append((time.perf_counter() - t0) * 1e3)
        if result is None:
            raise RuntimeError(f"frame {index} was not processed")
    step(
        f"{count} live frames of {size}x{size} through the depth model, p50 {statistics.median(times):.1f} ms",
        started,
    )


async def start_adapter(triton: TritonServer, name: str, task: str, model_id: str) -> tuple[Adapter, str]:
    settings = AdapterSettings(
        model_id=model_id, capability=name, task=task, host="127.0.0.1", port=0, ready_poll_seconds=0.2
    )
    adapter = Adapter(
        settings, TritonTaskBackend(TritonInference(triton.grpc_url, name, timeout_s=300), task)
    )
    await adapter.start()
    await asyncio.wait_for(adapter.readiness.wait_model_ready(), 300)
    return adapter, f"http://127.0.0.1:{adapter.port}"


async def run_demo(args: argparse.Namespace, triton: TritonServer, started: float) -> None:
    adapters = []
    try:
        img2img, img2img_url = await start_adapter(triton, "img2img", "image-to-image", MODEL_ID)
        depth, depth_url = await start_adapter(
            triton, "depth", "depth-estimation", "lpbyoc-demo/tiny-depth-anything"
        )
        adapters = [img2img, depth]
        step(f"adapters ready: image-to-image at {img2img_url}, depth-estimation at {depth_url}", started)
        pixels = demo_image(args.size)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            await image_to_image(http, img2img_url, pixels, started)
            await depth_jobs(http, depth_url, pixels, args.jobs, started)
            await live_frames(depth, args.size, args.frames, started)
            async with http.get(f"{depth_url}/metrics") as resp:
                metrics = await resp.text()
        for line in metrics.splitlines():
            if line.startswith(("lpbyoc_adapter_requests_total", "lpbyoc_adapter_frames_total")):
                print(f"    {line}")
    finally:
        for adapter in adapters:
            await adapter.drain()
            await adapter.close()
        step("adapters stopped", started)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lpbyoc-demo-") as tmp:
        try:
            with demo_triton(Path(tmp), started) as triton:
                asyncio.run(run_demo(args, triton, started))
        except Exception as exc:
            print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    step("demo done", started)
    return 0
