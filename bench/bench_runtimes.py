"""B9: Hugging Face runtimes through Triton (python backend) vs the same runtime in-process.

Builds random-weight snapshots of real architectures (lpbyoc_worker.samples): an SD-style
img2img pipeline ("bench" profile, 512², 2 steps at strength 0.5 = 1 denoising step) and
Depth-Anything-V2-Small's real config (512² in). Each is laid out as a prefetched snapshot,
turned into a Triton model by `model-repo --task`, served by a real tritonserver, and compared
request by request with the same runtime loaded in this process (interleaved, order rotating,
same CPU thread budget). Prints p50/p90 per path, the p50 ratio, load time and RSS per model.

    .venv/bin/python bench/bench_runtimes.py [--quick] [--device cpu|cuda] [--sd-profile bench|sd-turbo]
        [--depth-profile depth-anything-v2-small|tiny] [--size 512] [--iterations 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpbyoc_worker import samples
from lpbyoc_worker.inference import TritonInference
from lpbyoc_worker.runtimes.backends import LocalTaskBackend, TritonTaskBackend
from lpbyoc_worker.runtimes.base import Device, TaskRequest

from tests.support.task_models import running_task_triton

THREADS = str(os.cpu_count() or 1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stub_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "triton_python_backend_stub" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(found)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


async def compare(
    name: str, triton: TritonTaskBackend, local: LocalTaskBackend, request: TaskRequest, n: int
):
    for backend in (triton, local):  # warm up: first calls allocate and tune kernels
        await backend.run(request)
    paths = {"triton": triton, "in-process": local}
    samples_s: dict[str, list[float]] = {k: [] for k in paths}
    order = list(paths)
    for i in range(n):
        for key in order[i % 2 :] + order[: i % 2]:
            started = time.perf_counter()
            await paths[key].run(request)
            samples_s[key].append(time.perf_counter() - started)
    t50, l50 = pct(samples_s["triton"], 50), pct(samples_s["in-process"], 50)
    return (name, t50, pct(samples_s["triton"], 90), l50, pct(samples_s["in-process"], 90), t50 / l50)


async def main_async(args: argparse.Namespace, work: Path) -> None:
    cache = work / "cache"
    started = time.perf_counter()
    sd_dir = samples.as_cached_snapshot(
        cache, samples.build_sd_pipeline(work / "build-sd", args.sd_profile), "bench/sd", "b" * 40
    )
    depth_dir = samples.as_cached_snapshot(
        cache, samples.build_depth_anything(work / "build-depth", args.depth_profile), "bench/depth", "c" * 40
    )
    print(f"built snapshots in {time.perf_counter() - started:.1f} s")
    device = Device("cuda:0" if args.device == "cuda" else "cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    img2img = TaskRequest(
        params={
            "prompt": "a watercolour fox",
            "strength": 0.5,
            "num_inference_steps": 2,
            "guidance_scale": 0.0,
            "seed": 7,
        },
        image=image,
    )
    depth = TaskRequest(params={}, image=image)

    loads: dict[str, float] = {}
    local: dict[str, LocalTaskBackend] = {}
    import torch

    torch.set_num_threads(int(THREADS))
    for task, directory in (("image-to-image", sd_dir), ("depth-estimation", depth_dir)):
        t0 = time.perf_counter()
        local[task] = LocalTaskBackend.load(task, directory, device)
        loads[task] = time.perf_counter() - t0

    t0 = time.perf_counter()
    models = {"img2img": (sd_dir, "image-to-image"), "depth": (depth_dir, "depth-estimation")}
    gpu = device.is_cuda
    with running_task_triton(work / "triton", models, cpu_threads=int(THREADS), gpu=gpu) as server:
        triton_ready = time.perf_counter() - t0
        rss = {pid: rss_mib(pid) for pid in stub_pids()}
        rows = []
        for model, task, request in (
            ("img2img", "image-to-image", img2img),
            ("depth", "depth-estimation", depth),
        ):
            backend = TritonTaskBackend(TritonInference(server.grpc_url, model, timeout_s=600), task)
            rows.append(await compare(task, backend, local[task], request, args.iterations))
            await backend.close()
    print(
        f"\nB9 runtimes, {args.size}x{args.size}, {args.iterations} interleaved requests each, device {device.name}"
    )
    header = f"{'task':<18}{'triton p50':>12}{'p90':>9}{'in-proc p50':>13}{'p90':>9}{'ratio p50':>11}"
    print(header + f"{'frames/s triton':>17}{'in-proc':>9}")
    for name, t50, t90, l50, l90, ratio in rows:
        line = f"{name:<18}{t50:>10.1f}ms{t90:>7.1f}ms{l50:>11.1f}ms{l90:>7.1f}ms{ratio:>10.3f}x"
        print(line + f"{1e3 / t50:>17.2f}{1e3 / l50:>9.2f}")
    print(
        f"\nload: tritonserver start -> both models ready {triton_ready:.1f} s; in-process "
        + ", ".join(f"{task} {seconds:.1f} s" for task, seconds in loads.items())
    )
    print("RSS per Triton python-backend instance: " + ", ".join(f"{mib:.0f} MiB" for mib in rss.values()))
    print(f"RSS of this process (both runtimes in-process): {rss_mib(os.getpid()):.0f} MiB")
    if gpu:
        print(
            f"VRAM in-process (peak allocated by torch): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        )
        print(nvidia_smi_memory())


def nvidia_smi_memory() -> str:
    """Per-process GPU memory as the driver reports it (the Triton stubs included)."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError as exc:
        return f"nvidia-smi unavailable: {exc}"
    return "VRAM per process (nvidia-smi):\n" + out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 256², 3 requests")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sd-profile", default="bench", choices=samples.SD_PROFILES)
    parser.add_argument("--depth-profile", default="depth-anything-v2-small", choices=samples.DEPTH_PROFILES)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.sd_profile, args.depth_profile, args.size, args.iterations = "tiny", "tiny", 256, 3
    os.environ.setdefault("LPBYOC_CPU_THREADS", THREADS)
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as work:
        asyncio.run(main_async(args, Path(work)))


if __name__ == "__main__":
    main()
