"""`lpbyoc-worker demo`: the worker pod on loopback, no cluster.

Builds a small TorchScript model on the spot (a sepia colour matrix then a 3x3 blur), lays it out
as a prefetched snapshot, generates the Triton model repository from it, starts a real
`tritonserver` and the adapter, sends a BYOC job and a few live frames through the adapter's
frame path, prints results and timings, then shuts everything down.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
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

from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.settings import AdapterSettings
from lpbyoc_worker.inference import TritonInference
from lpbyoc_worker.modelrepo.layout import generate
from lpbyoc_worker.modelrepo.serving import TritonServing
from lpbyoc_worker.tritonproc import TritonOptions, TritonServer
from lpbyoc_worker.weights import ManifestEntry, Marker, sha256_file, snapshot_dir, write_marker

DEMO_REPO = "lpbyoc-demo/sepia-blur"
DEMO_SHA = "d" * 40
MODEL_NAME = "model"
SEPIA = ((0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131))


class SepiaBlur(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.colour = torch.nn.Conv2d(3, 3, kernel_size=1, bias=False)
        self.blur = torch.nn.Conv2d(3, 3, kernel_size=3, padding=1, groups=3, bias=False)
        with torch.no_grad():
            self.colour.weight.copy_(torch.tensor(SEPIA).view(3, 3, 1, 1))
            self.blur.weight.fill_(1.0 / 9.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.blur(self.colour(x)), 0.0, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="side of the demo image and frames")
    parser.add_argument("--jobs", type=int, default=5, help="BYOC jobs to send")
    parser.add_argument("--frames", type=int, default=8, help="live frames to send")


def free_port() -> int:
    with closing(socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_demo_snapshot(cache_dir: Path) -> Path:
    """The model as the prefetch Job leaves it: files in the cache layout, completion marker last."""
    weights_dir = snapshot_dir(cache_dir, DEMO_REPO, DEMO_SHA)
    weights_dir.mkdir(parents=True)
    model_path = weights_dir / "model.pt"
    torch.jit.save(torch.jit.script(SepiaBlur().eval()), str(model_path))
    entry = ManifestEntry(path="model.pt", size=model_path.stat().st_size, sha256=sha256_file(model_path))
    write_marker(
        cache_dir,
        Marker(
            repo=DEMO_REPO,
            revision="main",
            sha=DEMO_SHA,
            files=(entry,),
            completed_at=datetime.datetime.now(datetime.UTC).isoformat(),
        ),
    )
    return weights_dir


def demo_image(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    return (np.stack([x, y, 1 - x * y], axis=-1) * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def step(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.2f}s] {message}", flush=True)


async def send_jobs(url: str, pixels: np.ndarray, count: int, started: float) -> None:
    body = {"image": base64.b64encode(png_bytes(pixels)).decode(), "params": {"format": "png"}}
    totals = []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/schema") as resp:
            schema = await resp.json()
        step(f"GET /v1/schema → {resp.status}, input fields {sorted(schema['input']['properties'])}", started)
        for index in range(count):
            t0 = time.perf_counter()
            async with http.post(f"{url}/v1/infer", json=body) as resp:
                answer = await resp.json()
            totals.append((time.perf_counter() - t0) * 1e3)
            if resp.status != 200:
                raise RuntimeError(f"job failed: {resp.status} {answer}")
            if index == 0:
                out = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))))
                step(
                    f"POST /v1/infer → 200, {answer['width']}x{answer['height']} {answer['content_type']}, "
                    f"mean RGB in {pixels.reshape(-1, 3).mean(0).round(1).tolist()} "
                    f"→ out {out.reshape(-1, 3).mean(0).round(1).tolist()}, timings {answer['timings']}",
                    started,
                )
        step(f"{count} jobs: client round trip p50 {statistics.median(totals):.1f} ms", started)
        async with http.post(
            f"{url}/v1/infer", data=b"not an image", headers={"Content-Type": "image/png"}
        ) as resp:
            step(f"bad input → {resp.status} {await resp.json()}", started)


async def send_frames(adapter: Adapter, size: int, count: int, started: float) -> None:
    times = []
    for index in range(count):
        level = index / max(1, count - 1)
        tensor = torch.full((1, size, size, 3), level, dtype=torch.float32)
        t0 = time.perf_counter()
        result = await adapter.processor.process_video_async(VideoFrame.from_tensor(tensor, timestamp=index))
        times.append((time.perf_counter() - t0) * 1e3)
        if result is None:
            raise RuntimeError(f"frame {index} was not processed")
        mean = result.tensor.mean().item()
        print(f"    frame {index}: grey {level:.2f} → mean {mean:.3f} in {times[-1]:.1f} ms", flush=True)
    step(
        f"{count} live frames of {size}x{size} through the frame path, p50 {statistics.median(times):.1f} ms",
        started,
    )


@contextmanager
def demo_triton(workdir: Path, started: float | None = None) -> Iterator[TritonServer]:
    """A real tritonserver on free loopback ports serving the demo model, as the worker pod runs it."""
    started = time.perf_counter() if started is None else started
    weights_dir = write_demo_snapshot(workdir / "cache")
    step(f"demo model written as a cached snapshot: {weights_dir}", started)
    generated = generate(
        weights_dir, workdir / "models", TritonServing(), model_name=MODEL_NAME, kind="KIND_CPU"
    )
    step(f"Triton model repository generated ({generated.model_format}): {generated.directory}", started)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    triton = TritonServer(
        TritonOptions(
            model_repository=workdir / "models",
            models=(MODEL_NAME,),
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
        ),
        runtime_dir=workdir / "triton",
    )
    try:
        triton.start(60.0)
        step(f"tritonserver ready: gRPC {triton.grpc_url}", started)
        yield triton
    finally:
        triton.close()
        step("tritonserver stopped", started)


async def run_demo(args: argparse.Namespace, triton: TritonServer, started: float) -> None:
    settings = AdapterSettings(
        model_id=DEMO_REPO, capability="sepia-blur", host="127.0.0.1", port=0, ready_poll_seconds=0.2
    )
    adapter = Adapter(settings, TritonInference(triton.grpc_url, MODEL_NAME))
    await adapter.start()
    url = f"http://127.0.0.1:{adapter.port}"
    try:
        await asyncio.wait_for(adapter.readiness.wait_model_ready(), 30)
        step(f"adapter ready at {url}", started)
        pixels = demo_image(args.size)
        await send_jobs(url, pixels, args.jobs, started)
        await send_frames(adapter, args.size, args.frames, started)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        for line in metrics.splitlines():
            if line.startswith(("lpbyoc_adapter_requests_total", "lpbyoc_adapter_frames_total")):
                print(f"    {line}")
    finally:
        await adapter.drain()
        await adapter.close()
        step("adapter stopped", started)


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
