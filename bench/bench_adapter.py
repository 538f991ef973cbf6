"""B4: the same request through the adapter vs tritonclient straight to the same Triton.

One real tritonserver (the demo model: 1x1 colour conv + 3x3 blur, python backend) and one
`lpbyoc-worker serve` process, as in the worker pod. For each frame size and concurrency the
modes run interleaved, round by round, so that load from elsewhere on the machine hits them alike:

- direct      tritonclient.grpc.aio → Triton, (1, 3, H, W) float32 in and out (the baseline;
              tensors in the gRPC messages, as any client outside the pod must send them)
- adapter     HTTP POST /v1/infer with the same float32 tensor (application/octet-stream) and
              the float32 output back: the adapter's own cost (HTTP hop, checks, the call to
              Triton, which TritonInference makes through system shared memory when it can)
- adapter png the BYOC job as clients send it: PNG in, PNG out (adds decode and encode)

Prints p50/p90 per mode and the p50 ratio against direct. Target: adapter/direct ≤ 1.10 at 512².

    .venv/bin/python bench/bench_adapter.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpc_aio
from lpbyoc_worker.demo import DEMO_REPO, MODEL_NAME, demo_triton, free_port
from PIL import Image

Call = Callable[[], Awaitable[None]]


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
        "--triton-grpc", grpc_url, "--model-name", MODEL_NAME, "--model-id", DEMO_REPO,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: under a minute")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256, 512])
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    args = parser.parse_args()
    args.rounds = args.rounds or (10 if args.quick else 60)
    args.warmup_rounds = 1 if args.quick else 3
    print(
        f"B4 adapter vs tritonclient direct; {args.rounds} interleaved rounds per row; {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="lpbyoc-bench-") as tmp, demo_triton(Path(tmp)) as server:
        print(HEADER)
        asyncio.run(bench(args, server.grpc_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
