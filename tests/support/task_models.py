"""Tiny Hugging Face snapshots served the production way: Hub fixture → prefetch → model-repo → Triton.

`publish_and_prefetch` puts a `save_pretrained` directory on the Hub-compatible fixture and runs the
real prefetcher (a child process, as the prefetch Job runs it) into a cache; `running_task_triton`
generates one Triton model per (snapshot, task) with the real `model-repo` subcommand and starts one
real tritonserver that loads them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lpbyoc_worker.tritonproc import TritonServer

from tests.support.hub_server import FakeHub
from tests.support.triton import start_on_free_ports

# Each python-backend instance imports torch and diffusers/transformers: on a loaded 2-core box
# several loading at once take minutes, not seconds.
TASK_MODELS_START_TIMEOUT_S = 600.0
WORKER = [sys.executable, "-m", "lpbyoc_worker.cli"]


def directory_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path (what a Hub repo of that directory holds)."""
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
    }


def publish_and_prefetch(
    hub: FakeHub, source: Path, repo: str, cache: Path, *extra: str, timeout: float = 300
) -> tuple[Path, dict[str, object]]:
    """Publish `source` as `repo` and prefetch its main branch; returns (snapshot dir, result JSON)."""
    sha = hub.add_repo(repo, directory_files(source))
    term = cache.parent / f"termination-{repo.replace('/', '--')}"
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run(
        [
            *WORKER,
            "prefetch",
            "--repo",
            repo,
            "--revision",
            "main",
            "--cache-dir",
            str(cache),
            "--progress-port",
            "-1",
            "--termination-log",
            str(term),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prefetch of {repo} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    snapshot = cache / "models" / repo.replace("/", "--") / sha
    assert snapshot.is_dir(), f"prefetch left no snapshot at {snapshot}"
    return snapshot, result


def run_model_repo_task(
    weights_dir: Path,
    output: Path,
    model_name: str,
    task: str | None,
    *,
    serving: Mapping[str, object] | None = None,
    kind: str = "KIND_CPU",
) -> subprocess.CompletedProcess[str]:
    """`lpbyoc-worker model-repo --task` as the init container runs it."""
    argv = [
        *WORKER,
        "model-repo",
        "--weights-dir",
        str(weights_dir),
        "--output",
        str(output),
        "--model-name",
        model_name,
        "--serving-json",
        json.dumps(dict(serving or {})),
        "--kind",
        kind,
    ]
    if task:
        argv += ["--task", task]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@dataclass
class TaskTriton:
    server: TritonServer
    repository: Path

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url


@contextmanager
def running_task_triton(
    workdir: Path, models: Mapping[str, tuple[Path, str]], *, cpu_threads: int = 1, gpu: bool = False
) -> Iterator[TaskTriton]:
    """One tritonserver serving `models` ({model name: (snapshot dir, task)}); stopped on exit."""
    repository = workdir / "models"
    for name, (weights_dir, task) in models.items():
        generated = run_model_repo_task(
            weights_dir, repository, name, task, kind="KIND_GPU" if gpu else "KIND_CPU"
        )
        if generated.returncode != 0:
            raise RuntimeError(f"model-repo for {name} failed: {generated.stderr}")
    os.environ.setdefault("LPBYOC_CPU_THREADS", str(cpu_threads))
    server = start_on_free_ports(
        repository, tuple(models), workdir, gpu=gpu, timeout=TASK_MODELS_START_TIMEOUT_S
    )
    handle = TaskTriton(server=server, repository=repository)
    try:
        yield handle
    finally:
        handle.server.stop()
