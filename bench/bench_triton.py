"""B5: the same TorchScript module through Triton (python backend) vs called in-process.

Starts a real tritonserver (the nvidia-pytriton wheel here, or whatever `locate_triton` finds) on
loopback with the generated model repository, then for each frame size runs the in-process module,
the gRPC client (plain, and with system shared memory for the tensors) and the HTTP client in rotating order (interleaved, so drift hits all alike) and
prints p50/p90 and the ratio of each transport's p50 to the in-process p50.

    .venv/bin/python bench/bench_triton.py [--quick] [--device cpu|cuda] [--sizes 64 256 512]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpbyoc_worker.inference import TritonInference

from tests.support.triton import DEFAULT_SERVING, running_triton


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


async def measure(
    size: int, iterations: int, runners: dict[str, Callable[[np.ndarray], Awaitable[None]]]
) -> dict[str, list[float]]:
    frame = np.random.default_rng(size).random((1, 3, size, size), dtype=np.float32)
    names = list(runners)
    for name in names:  # warm up every path (first calls allocate, JIT, connect)
        for _ in range(3):
            await runners[name](frame)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iterations):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            await runners[name](frame)
            samples[name].append(time.perf_counter() - start)
    return samples


async def run(args: argparse.Namespace, triton_grpc: str, triton_http: str, torchscript: Path) -> None:
    device = torch.device(args.device)
    module = torch.jit.load(str(torchscript), map_location=device).eval()

    async def in_process(frame: np.ndarray) -> None:
        with torch.inference_mode():
            out = module(torch.from_numpy(frame).to(device))
            out.cpu().numpy()  # same work as Triton's backend: result back in host memory

    grpc = TritonInference(triton_grpc, protocol="grpc", shared_memory=False)
    grpc_shm = TritonInference(triton_grpc, protocol="grpc", shared_memory=True)
    http = TritonInference(triton_http, protocol="http")
    runners: dict[str, Callable[[np.ndarray], Awaitable[None]]] = {
        "in-process": in_process,
        "triton-grpc": grpc.infer,
        "grpc+shm": grpc_shm.infer,
    }
    if not args.no_http:
        runners["triton-http"] = http.infer
    iterations = 15 if args.quick else args.iterations
    header = f"{'frame':>7} {'path':<12} {'p50 ms':>9} {'p90 ms':>9} {'p50 ratio':>10} {'frames/s':>9}"
    print(f"B5 Triton vs in-process ({args.device}, batch 1, fp32, {iterations} interleaved calls per path)")
    print(header)
    print("-" * len(header))
    try:
        for size in args.sizes:
            samples = await measure(size, iterations, runners)
            base = percentile(samples["in-process"], 50)
            for name, values in samples.items():
                p50 = percentile(values, 50)
                print(
                    f"{size:>5}² {name:<12} {p50:9.2f} {percentile(values, 90):9.2f} {p50 / base:9.2f}x {1e3 / p50:9.1f}"
                )
    finally:
        await grpc.close()
        await grpc_shm.close()
        await http.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 calls per path (under a minute)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-http", action="store_true", help="gRPC only")
    args = parser.parse_args()
    serving = dict(DEFAULT_SERVING)
    kind = "KIND_GPU" if args.device == "cuda" else "KIND_CPU"
    with (
        tempfile.TemporaryDirectory(prefix="bench-triton-") as workdir,
        running_triton(Path(workdir), serving=serving, kind=kind) as triton,
    ):
        asyncio.run(run(args, triton.grpc_url, triton.http_url, triton.torchscript_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
