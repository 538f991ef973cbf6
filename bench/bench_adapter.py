"""B4: the same request through the adapter vs tritonclient straight to the same Triton.

One real tritonserver (a TorchScript filter: 1x1 colour conv + 3x3 blur, python backend) and one
`lpbyoc-worker serve` process, as in the worker pod. For each frame size and concurrency the
modes run interleaved, round by round, so that load from elsewhere on the machine hits them alike:

- direct      tritonclient.grpc.aio → Triton, (1, 3, H, W) float32 in and out (the baseline;
              tensors in the gRPC messages, as any client outside the pod must send them)
- adapter     HTTP POST /v1/infer with the same float32 tensor (application/octet-stream) and
              the float32 output back: the adapter's own cost (HTTP hop, checks, the call to
              Triton, which TritonInference makes through system shared memory when it can)
- adapter png the BYOC job as clients send it: PNG in, PNG out (adds decode and encode)

Prints p50/p90 per mode and the p50 ratio against direct. Target: adapter/direct ≤ 1.10 at 512².

Then, per route (`--routes`): one tiny random-weight model of the real architecture per task
(tests/support/tiny_*.py), laid out as prefetched snapshots, all served by ONE tritonserver
(`model-repo --task`, tests/support/task_models.running_task_triton), one `lpbyoc-worker serve
--task` process per route, and the same runtimes loaded in this process. Round by round, order
rotating, each route compares

- adapter     the HTTP request as go-livepeer builds it (tests/support/golivepeer.py: multipart
              fields in multipart.go's order, JSON for text-to-image; BYOC JSON for /v1/infer),
              PNG/WAV in, ai-runner's JSON (PNG data URLs) out, through Triton
- in-process  LocalTaskBackend.run on the already decoded input with the params the adapter
              builds for that request (same seed), no HTTP, no codecs, no Triton

Target (issue 10): overhead = adapter p50 - in-process p50 ≤ max(5 ms, 10 % of in-process p50).
CPU threads are bounded alike: LPBYOC_CPU_THREADS for the Triton stubs, the same count in here.

    .venv/bin/python bench/bench_adapter.py [--quick] [--routes all|none|ROUTE,...] [--no-filter]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from socket import socket
from typing import Any

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpc_aio
from lpbyoc_worker import samples
from lpbyoc_worker.modelrepo.layout import generate
from lpbyoc_worker.modelrepo.serving import TritonServing
from lpbyoc_worker.tritonproc import TritonOptions, TritonServer
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

Call = Callable[[], Awaitable[None]]

# The TorchScript filter of the first table: a 1x1 colour conv + 3x3 blur (samples.build_sepia_torchscript).
FILTER_REPO = "lpbyoc-bench/sepia-blur"
MODEL_NAME = "model"


def free_port() -> int:
    with closing(socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def filter_triton(workdir: Path) -> Iterator[TritonServer]:
    """The filter as a prefetched snapshot → `model-repo`'s TorchScript model → a real tritonserver."""
    built = samples.build_sepia_torchscript(workdir / "build")
    snapshot = samples.as_cached_snapshot(workdir / "cache", built, FILTER_REPO, "d" * 40)
    generate(snapshot, workdir / "models", TritonServing(), model_name=MODEL_NAME, kind="KIND_CPU")
    triton = TritonServer(
        TritonOptions(
            model_repository=workdir / "models",
            models=(MODEL_NAME,),
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
        ),
        runtime_dir=workdir / "triton",
    )
    try:
        triton.start(120.0)
        yield triton
    finally:
        triton.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def wait_ready(http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"adapter exited with {process.returncode}")
        try:
            async with http.get(f"{url}/ready") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("adapter not ready within 60 s")


def make_calls(
    size: int, triton: grpc_aio.InferenceServerClient, http: aiohttp.ClientSession, url: str
) -> dict[str, Call]:
    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    raw = tensor.tobytes()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    png = buf.getvalue()
    raw_headers = {
        "Content-Type": "application/octet-stream",
        "Accept": "application/octet-stream",
        "X-Tensor-Shape": f"1,3,{size},{size}",
    }

    async def direct() -> None:
        # Input/output names are the model repository's defaults (INPUT__0 / OUTPUT__0).
        wire = grpc_aio.InferInput("INPUT__0", list(tensor.shape), "FP32")
        wire.set_data_from_numpy(tensor)
        result = await triton.infer(MODEL_NAME, [wire], outputs=[grpc_aio.InferRequestedOutput("OUTPUT__0")])
        if result.as_numpy("OUTPUT__0").shape != tensor.shape:
            raise Failed("direct: wrong output shape")

    async def adapter_raw() -> None:
        async with http.post(f"{url}/v1/infer", data=raw, headers=raw_headers) as resp:
            body = await resp.read()
            if resp.status != 200 or len(body) != len(raw):
                raise Failed(f"adapter: {resp.status} {body[:200]!r}")

    async def adapter_png() -> None:
        async with http.post(
            f"{url}/v1/infer", data=png, headers={"Content-Type": "image/png", "Accept": "image/png"}
        ) as resp:
            body = await resp.read()
            if resp.status != 200 or not body.startswith(b"\x89PNG"):
                raise Failed(f"adapter png: {resp.status} {body[:200]!r}")

    return {"direct": direct, "adapter": adapter_raw, "adapter png": adapter_png}


class Failed(Exception):
    """A request that did not succeed: counted, kept out of the latencies."""


async def timed(call: Call) -> float | None:
    started = time.perf_counter()
    try:
        await call()
    except Failed:
        return None
    return (time.perf_counter() - started) * 1e3


async def measure(
    calls: dict[str, Call], concurrency: int, rounds: int, warmup_rounds: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    errors = dict.fromkeys(calls, 0)
    names = list(calls)
    for _ in range(warmup_rounds):  # connections, Triton's and the adapter's first-call costs
        for name in names:
            warm = await asyncio.gather(*(timed(calls[name]) for _ in range(concurrency)))
            errors[name] += sum(latency is None for latency in warm)
    for index in range(rounds):
        # Rotate the order so no mode always runs right after another.
        for name in names[index % len(names) :] + names[: index % len(names)]:
            for latency in await asyncio.gather(*(timed(calls[name]) for _ in range(concurrency))):
                if latency is None:
                    errors[name] += 1
                else:
                    samples[name].append(latency)
    return samples, errors


async def bench(args: argparse.Namespace, grpc_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lpbyoc_worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--triton-grpc", grpc_url, "--model-name", MODEL_NAME, "--model-id", FILTER_REPO,
        "--capacity", "16", "--max-body-bytes", str(64 * 1024 * 1024), "--log-level", "WARNING",
        env={**os.environ, "AUTH_TOKEN": ""},
    )  # fmt: skip
    triton = grpc_aio.InferenceServerClient(grpc_url)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            await wait_ready(http, url, process)
            rows = []
            for size in args.sizes:
                calls = make_calls(size, triton, http, url)
                for concurrency in args.concurrency:
                    samples, errors = await measure(calls, concurrency, args.rounds, args.warmup_rounds)
                    rows.append((size, concurrency, samples))
                    print_row(size, concurrency, samples, errors)
    finally:
        await triton.close()
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    print()
    print("ratio = p50 of the mode / p50 of direct, same rounds; target adapter ≤ 1.10 at 512².")
    print("errors = failed requests direct/adapter/png, warm-up included (kept out of the latencies).")
    verdicts = [
        statistics.median(s["adapter"]) / statistics.median(s["direct"]) for size, _, s in rows if size == 512
    ]
    if verdicts:
        print(
            f"512²: adapter/direct p50 ratio {', '.join(f'{v:.2f}' for v in verdicts)} (concurrency {args.concurrency})"
        )


HEADER = (
    f"{'frame':>6} {'conc':>4} {'n':>4} | {'direct p50':>10} {'p90':>7} | {'adapter p50':>11} {'p90':>7} "
    f"{'ratio':>6} | {'png p50':>8} {'p90':>7} {'ratio':>6} | {'errors':>8}"
)


def print_row(size: int, concurrency: int, samples: dict[str, list[float]], errors: dict[str, int]) -> None:
    direct = statistics.median(samples["direct"])
    adapter = statistics.median(samples["adapter"])
    png = statistics.median(samples["adapter png"])
    print(
        f"{f'{size}²':>6} {concurrency:>4} {len(samples['direct']):>4} | "
        f"{direct:>8.2f}ms {percentile(samples['direct'], 90):>7.2f} | "
        f"{adapter:>9.2f}ms {percentile(samples['adapter'], 90):>7.2f} {adapter / direct:>6.2f} | "
        f"{png:>6.2f}ms {percentile(samples['adapter png'], 90):>7.2f} {png / direct:>6.2f} | "
        f"{'/'.join(str(errors[name]) for name in ('direct', 'adapter', 'adapter png')):>8}",
        flush=True,
    )


# Per route: adapter + Triton vs the same runtime in-process -------------------------------------
ROUTE_MODEL_ID = "bench/route-model"
ROUTES = (
    "text-to-image",
    "image-to-image",
    "upscale",
    "image-to-video",
    "image-to-text",
    "audio-to-text",
    "segment-anything-2",
    "depth-estimation",
)


@dataclass(frozen=True)
class RouteCase:
    route: str  # as printed: the ai-runner route, or "v1/infer depth" for BYOC
    task: str
    snapshot: str  # key of SNAPSHOT_BUILDERS
    body: str  # "form" (multipart), "json" (text-to-image) or "byoc" (/v1/infer)
    fields: dict[str, Any]  # what go-livepeer sets (model_id added), Python-typed
    size: str  # input (and output) as printed
    image_side: int = 0
    audio_seconds: float = 0.0

    @property
    def path(self) -> str:
        return "/v1/infer" if self.body == "byoc" else f"/{self.task}"


def route_cases(quick: bool) -> dict[str, RouteCase]:
    steps = 2
    t2i_side = 256 if quick else 512
    video_side = 128 if quick else 256
    return {
        c.task: c
        for c in (
            RouteCase(
                "text-to-image", "text-to-image", "sd", "json",
                {"prompt": "a red fox", "height": t2i_side, "width": t2i_side, "guidance_scale": 0.0,
                 "num_inference_steps": steps, "seed": 11, "safety_check": False},
                f"- → {t2i_side}² png",
            ),
            RouteCase(
                "image-to-image", "image-to-image", "sd", "form",
                {"prompt": "watercolour", "strength": 0.5, "guidance_scale": 0.0, "safety_check": False,
                 "seed": 5, "num_inference_steps": steps},
                "512² png → 512²", image_side=512,
            ),
            RouteCase(
                "upscale", "upscale", "upscaler", "form",
                {"prompt": "sharp", "safety_check": False, "seed": 3, "num_inference_steps": steps},
                f"{64 if quick else 128}² png → {256 if quick else 512}²", image_side=64 if quick else 128,
            ),
            RouteCase(
                "image-to-video", "image-to-video", "svd", "form",
                {"height": video_side, "width": video_side, "fps": 6, "seed": 9, "safety_check": False,
                 "num_inference_steps": steps},
                f"512² png → 2x{video_side}²", image_side=512,
            ),
            RouteCase("image-to-text", "image-to-text", "blip", "form", {"prompt": ""}, "512² png", image_side=512),
            RouteCase(
                "audio-to-text", "audio-to-text", "whisper", "form", {"return_timestamps": "true"},
                "2 s wav 16k", audio_seconds=2.0,
            ),
            RouteCase(
                "segment-anything-2", "segment-anything-2", "sam2", "form",
                {"point_coords": "[[256, 256]]", "point_labels": "[1]", "multimask_output": True,
                 "return_logits": True},
                "512² png", image_side=512,
            ),
            RouteCase("v1/infer depth", "depth-estimation", "depth", "byoc", {}, "512² png", image_side=512),
        )
    }  # fmt: skip


def snapshot_builders() -> dict[str, Callable[[Path], Path]]:
    from tests.support import tiny_diffusers, tiny_transformers

    return {
        "sd": tiny_diffusers.save_tiny_sd,
        "upscaler": tiny_diffusers.save_tiny_upscaler,
        "svd": tiny_diffusers.save_tiny_svd,
        "blip": tiny_transformers.build_blip,
        "whisper": tiny_transformers.build_whisper,
        "sam2": tiny_transformers.build_sam2,
        "depth": tiny_transformers.build_depth_anything,
    }


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@dataclass
class Prepared:
    """One route's request both ways: the HTTP body and the TaskRequest it decodes to."""

    case: RouteCase
    url: str
    body: bytes
    content_type: str
    request: Any  # TaskRequest
    respond: Callable[[Any], Any]  # TaskResult -> the JSON the adapter answers (for the codec column)
    decode: Callable[[], Any]  # the input decode the adapter does


def prepare(case: RouteCase, url: str) -> Prepared:
    """The go-livepeer request for `case` and the in-process TaskRequest the adapter would build."""
    from lpbyoc_worker.adapter import forms, imaging, media, taskjobs
    from lpbyoc_worker.adapter.pipelines import PIPELINES, Limits
    from lpbyoc_worker.runtimes.base import TaskRequest

    from tests.support.golivepeer import go_value, multipart_body, text_to_image_body
    from tests.support.tiny_transformers import random_image, tone

    limits = imaging.ImageLimits()
    fields = {"model_id": ROUTE_MODEL_ID, **case.fields}
    image = audio = None
    file_bytes = b""
    decode: Callable[[], Any] = lambda: None  # noqa: E731
    if case.image_side:
        png = encode_png_level1(random_image(case.image_side, case.image_side, seed=case.image_side))
        image = media.decode_image(png, limits)
        file_bytes = png
        decode = lambda: media.decode_image(png, limits)  # noqa: E731
    if case.audio_seconds:
        wav = wav_bytes(tone(case.audio_seconds), media.SPEECH_SAMPLING_RATE)
        audio = media.decode_audio(wav)
        file_bytes = wav
        decode = lambda: media.decode_audio(wav)  # noqa: E731
    if case.body == "byoc":
        text = base64.b64encode(file_bytes).decode("ascii")
        body = json.dumps({"image": text, "params": {}}).encode()
        content_type = "application/json"
        values: dict[str, Any] = {"depth_format": "png16"}
        params: dict[str, Any] = {}
        decode = lambda: media.decode_image(imaging.decode_base64(text), limits)  # noqa: E731

        def respond(result: Any) -> Any:
            return json.dumps(taskjobs.encode_result(case.task, result, {**values, **params}, None))

        return Prepared(
            case, url, body, content_type, TaskRequest(params=params, image=image), respond, decode
        )
    pipeline = PIPELINES[case.task]
    route_fields = [f for f in pipeline.fields(Limits()) if f.kind != "file"]
    if case.body == "json":
        body = text_to_image_body(fields)
        content_type = "application/json"
        values = forms.parse_fields(json.loads(body), route_fields, "json")
    else:
        filename = "input.wav" if case.audio_seconds else "input.png"
        body, content_type = multipart_body(case.task, fields, file_bytes, filename)
        text_fields = {name: go_value(name, value) for name, value in fields.items()}
        values = forms.parse_fields(text_fields, route_fields, "form")
    params = pipeline.build(values)

    def respond_json(result: Any) -> Any:
        return json.dumps(pipeline.respond(result, values, params))

    request = TaskRequest(params=params, image=image, audio=audio)
    return Prepared(case, url, body, content_type, request, respond_json, decode)


def encode_png_level1(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def server_timing_ms(header: str) -> float | None:
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if name == "model" and rest.startswith("dur="):
            return float(rest[4:])
    return None


class RouteSamples:
    def __init__(self) -> None:
        self.adapter: list[float] = []
        self.local: list[float] = []
        self.model: list[float] = []  # the adapter's own Server-Timing: its call to Triton
        self.errors = 0
        self.codec_ms = float("nan")
        self.response_bytes = 0
        self.same = False


async def adapter_call(
    http: aiohttp.ClientSession, prepared: Prepared, check: bool = False
) -> tuple[float, float, bytes]:
    """One request as go-livepeer sends it: (ms, the adapter's Server-Timing model ms, the body)."""
    started = time.perf_counter()
    async with http.post(
        prepared.url + prepared.case.path, data=prepared.body, headers={"Content-Type": prepared.content_type}
    ) as resp:
        raw = await resp.read()
        elapsed = (time.perf_counter() - started) * 1e3
        if resp.status != 200:
            raise Failed(f"{prepared.case.route}: {resp.status} {raw[:300]!r}")
        if check and prepared.case.body != "byoc":  # decoded as go-livepeer decodes it
            from tests.support.golivepeer import judge

            judge(resp.status, resp.headers.get("Content-Type", ""), raw, prepared.case.task)
        model = server_timing_ms(resp.headers.get("Server-Timing", ""))
        return elapsed, float("nan") if model is None else model, raw


def same_answer(prepared: Prepared, raw: bytes, local_json: str) -> bool:
    """The adapter's answer equals the in-process result encoded the adapter's way (same seed)."""
    answer = json.loads(raw)
    if prepared.case.body == "byoc":
        answer = {k: v for k, v in answer.items() if k not in ("schema", "task", "model_id", "timings")}
    return bool(answer == json.loads(local_json))


async def local_call(backend: Any, prepared: Prepared) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await backend.run(prepared.request)
    return (time.perf_counter() - started) * 1e3, result


def codec_ms(prepared: Prepared, result: Any, repeats: int = 3) -> float:
    """What the adapter does around the model for this route, timed here: decode the upload, build
    the answer (PNG encode + base64, or the masks' Python-list strings) and serialise it as JSON."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        prepared.decode()
        prepared.respond(result)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


async def start_adapter(task: str, model_name: str, grpc_url: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lpbyoc_worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--task", task, "--triton-grpc", grpc_url, "--model-name", model_name, "--model-id", ROUTE_MODEL_ID,
        "--capacity", "1", "--triton-timeout", "600", "--max-body-bytes", str(64 * 1024 * 1024),
        "--log-level", "WARNING",
        env={**os.environ, "AUTH_TOKEN": ""},
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


async def wait_idle(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, limit_s: float = 300
) -> None:
    """Until /health says IDLE (the model is ready in Triton), as go-livepeer waits at startup."""
    deadline = time.monotonic() + limit_s
    status = "?"
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"adapter at {url} exited with {process.returncode}")
        try:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    status = (await resp.json())["status"]
                    if status == "IDLE":
                        return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"adapter at {url} not IDLE within {limit_s:.0f} s (last status {status})")


async def bench_routes(
    args: argparse.Namespace, cases: list[RouteCase], grpc_url: str, local: dict[str, Any]
) -> dict[str, RouteSamples]:
    processes: list[asyncio.subprocess.Process] = []
    results = {case.task: RouteSamples() for case in cases}
    try:
        started = [await start_adapter(case.task, model_name(case.task), grpc_url) for case in cases]
        processes = [process for process, _ in started]
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=900)
        ) as http:
            await asyncio.gather(*(wait_idle(http, url, process) for process, url in started))
            prepared = [prepare(case, url) for case, (_, url) in zip(cases, started, strict=True)]
            for item in prepared:  # the request in both forms, once: checks + first-call costs
                _, _, raw = await adapter_call(http, item, check=True)
                _, result = await local_call(local[item.case.task], item)
                record = results[item.case.task]
                record.codec_ms = codec_ms(item, result)
                local_json = item.respond(result)
                record.response_bytes = len(raw)
                record.same = same_answer(item, raw, local_json)
            for _ in range(args.route_warmup - 1):
                for item in prepared:
                    await adapter_call(http, item)
                    await local_call(local[item.case.task], item)
            for index in range(args.route_rounds):
                for item in prepared:
                    record = results[item.case.task]
                    order = ("adapter", "local") if index % 2 == 0 else ("local", "adapter")
                    for path in order:
                        if path == "local":
                            record.local.append((await local_call(local[item.case.task], item))[0])
                            continue
                        try:
                            elapsed, model, _ = await adapter_call(http, item)
                        except Failed:
                            record.errors += 1
                            continue
                        record.adapter.append(elapsed)
                        record.model.append(model)
                print(f"  round {index + 1}/{args.route_rounds} done", flush=True)
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
    return results


def model_name(task: str) -> str:
    return task.replace("-", "_")


def allowed_overhead_ms(local_p50: float) -> float:
    """Issue 10's budget: 5 ms or 10 % of the in-process time, whichever is larger."""
    return max(5.0, 0.10 * local_p50)


ROUTE_HEADER = (
    f"{'route':<19} {'input → output':<20} {'n':>3} | {'adapter p50':>11} {'p90':>8} | "
    f"{'in-proc p50':>11} {'p90':>8} | {'overhead':>9} {'ratio':>6} {'verdict':>7} | "
    f"{'triton hop':>10} {'codec':>7} {'http+rest':>9} {'answer':>8} {'same':>4}"
)


def print_route_table(cases: list[RouteCase], results: dict[str, RouteSamples]) -> bool:
    print(ROUTE_HEADER)
    all_pass = True
    for case in cases:
        record = results[case.task]
        if not record.adapter or not record.local:
            print(f"{case.route:<19} {case.size:<20} no samples (errors {record.errors})")
            all_pass = False
            continue
        a50, l50 = statistics.median(record.adapter), statistics.median(record.local)
        model50 = statistics.median(record.model)
        overhead = a50 - l50
        ok = overhead <= allowed_overhead_ms(l50) and record.errors == 0
        all_pass &= ok
        print(
            f"{case.route:<19} {case.size:<20} {len(record.adapter):>3} | "
            f"{a50:>9.1f}ms {percentile(record.adapter, 90):>8.1f} | "
            f"{l50:>9.1f}ms {percentile(record.local, 90):>8.1f} | "
            f"{overhead:>7.1f}ms {a50 / l50:>6.3f} {'PASS' if ok else 'FAIL':>7} | "
            f"{model50 - l50:>8.1f}ms {record.codec_ms:>5.1f}ms {a50 - model50 - record.codec_ms:>7.1f}ms "
            f"{record.response_bytes / 1024:>6.0f}KiB {'yes' if record.same else 'no':>4}"
            + (f"  errors {record.errors}" if record.errors else ""),
            flush=True,
        )
    print()
    print(
        "overhead = adapter p50 - in-process p50; PASS when ≤ max(5 ms, 10 % of in-process p50), no errors."
    )
    print("breakdown (p50s): triton hop = the adapter's Server-Timing model time - in-process (gRPC,")
    print("  shared memory, the stub's JSON params/result); codec = input decode + answer encode (PNG +")
    print("  base64 / list strings + JSON) timed in this process; http+rest = adapter - model - codec")
    print("  (HTTP, multipart/JSON parsing, queueing, client read); answer = JSON body size; same = the")
    print("  adapter's answer equals the in-process result encoded the same way (same params and seed).")
    return all_pass


def run_routes(args: argparse.Namespace) -> bool:
    import torch
    from lpbyoc_worker.runtimes.backends import LocalTaskBackend
    from lpbyoc_worker.runtimes.base import Device, bound_cpu_threads

    from tests.support.task_models import running_task_triton

    available = route_cases(args.quick)
    cases = [available[task] for task in args.routes]
    os.environ["LPBYOC_CPU_THREADS"] = str(args.threads)  # the Triton stubs (model.py) read it
    threads = bound_cpu_threads()  # and this process, the same way
    builders = snapshot_builders()
    with tempfile.TemporaryDirectory(prefix="lpbyoc-bench-routes-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        snapshots: dict[str, Path] = {}
        for index, key in enumerate(dict.fromkeys(case.snapshot for case in cases)):
            built = builders[key](work / "build" / key)
            snapshots[key] = samples.as_cached_snapshot(
                work / "cache", built, f"bench/{key}", f"{index + 1:040x}"
            )
        print(f"built {len(snapshots)} snapshots in {time.perf_counter() - started:.1f} s", flush=True)
        local = {
            case.task: LocalTaskBackend.load(case.task, snapshots[case.snapshot], Device("cpu"))
            for case in cases
        }
        models = {model_name(case.task): (snapshots[case.snapshot], case.task) for case in cases}
        started = time.perf_counter()
        with running_task_triton(work / "triton", models, cpu_threads=threads) as server:
            print(
                f"tritonserver with {len(models)} task models ready in {time.perf_counter() - started:.1f} s; "
                f"{args.route_rounds} interleaved rounds",
                flush=True,
            )
            results = asyncio.run(bench_routes(args, cases, server.grpc_url, local))
    print()
    print(
        f"B4 per route: adapter + Triton vs the same runtime in-process; {threads} CPU threads each "
        f"(torch {torch.get_num_threads()} here, LPBYOC_CPU_THREADS={threads} in Triton); {os.cpu_count()} CPUs"
    )
    return print_route_table(cases, results)


def parse_routes(text: str) -> list[str]:
    if text == "all":
        return list(ROUTES)
    if text == "none":
        return []
    names = {"v1/infer": "depth-estimation", "depth": "depth-estimation"}
    routes = [names.get(name.strip(), name.strip()) for name in text.split(",") if name.strip()]
    unknown = [name for name in routes if name not in ROUTES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown route(s) {', '.join(unknown)}; one of {', '.join(ROUTES)}")
    return routes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller outputs: about 3 minutes")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the TorchScript table")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256, 512])
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument(
        "--routes",
        type=parse_routes,
        default=list(ROUTES),
        help=f"per-route table: 'all' (default), 'none', or a comma list of {', '.join(ROUTES)}",
    )
    parser.add_argument("--route-rounds", type=int, default=None, help="rounds of the per-route table")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="CPU threads of each runtime, both paths (default: half the cores; the rest is for the adapter, "
        "Triton and this client: on a busy 2-core box 2 OpenMP threads per stub made the Triton path 5-10x slower)",
    )
    parser.add_argument("--no-filter", action="store_true", help="skip the TorchScript filter table")
    args = parser.parse_args()
    args.rounds = args.rounds or (10 if args.quick else 60)
    args.warmup_rounds = 1 if args.quick else 3
    args.route_rounds = args.route_rounds or (5 if args.quick else 15)
    args.route_warmup = 1 if args.quick else 2
    if not args.no_filter:
        print(
            f"B4 adapter vs tritonclient direct; {args.rounds} interleaved rounds per row; {os.cpu_count()} CPUs"
        )
        with tempfile.TemporaryDirectory(prefix="lpbyoc-bench-") as tmp, filter_triton(Path(tmp)) as server:
            print(HEADER)
            asyncio.run(bench(args, server.grpc_url))
    if args.routes:
        print()
        run_routes(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
