"""A real tritonserver (from the nvidia-pytriton wheel) serving a tiny TorchScript conv net.

`running_triton(workdir)` is a plain context manager; `triton_server` is the session-scoped pytest
fixture built on it (register with `pytest_plugins = ["tests.support.triton"]` or import the fixture
into a conftest). The model goes the production way: a snapshot in the cache layout with its
completion marker → `lpbyoc-worker model-repo` → `TritonServer` on free loopback ports.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from lpbyoc_worker.tritonproc import TritonOptions, TritonServer, TritonStartError
from lpbyoc_worker.weights import ManifestEntry, Marker, sha256_file, snapshot_dir, write_marker

MODEL_NAME = "model"
REPO_ID = "lpbyoc-test/tiny-conv"
SNAPSHOT_SHA = "0123456789abcdef0123456789abcdef01234567"
START_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 3
# What the operator passes for a CPU capability with the spec's default tensors.
DEFAULT_SERVING: dict[str, object] = {
    "modelFormat": "auto",
    "maxBatchSize": 8,
    "instanceCount": 1,
    "dynamicBatching": {"enabled": True, "maxQueueDelayMicroseconds": 100},
    "inputs": [{"name": "INPUT__0", "dataType": "TYPE_FP32", "dims": [3, -1, -1]}],
    "outputs": [{"name": "OUTPUT__0", "dataType": "TYPE_FP32", "dims": [3, -1, -1]}],
}


class TinyConv(torch.nn.Module):
    """3→3 channel conv + sigmoid: image in, image out, like a restyle model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


def build_torchscript(path: Path, seed: int = 1234) -> torch.jit.ScriptModule:
    """Deterministic weights (seeded), scripted and saved to `path`."""
    torch.manual_seed(seed)
    module = torch.jit.script(TinyConv().eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(path))
    return module


def write_snapshot(
    cache_dir: Path, files: dict[str, bytes | Path], *, repo: str = REPO_ID, sha: str = SNAPSHOT_SHA
) -> Path:
    """A complete snapshot in the cache layout of docs/architecture.md, marker written last."""
    root = snapshot_dir(cache_dir, repo, sha)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for relpath, content in files.items():
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.read_bytes() if isinstance(content, Path) else content)
        entries.append(ManifestEntry(path=relpath, size=target.stat().st_size, sha256=sha256_file(target)))
    completed_at = datetime.datetime.now(datetime.UTC).isoformat()
    write_marker(
        cache_dir,
        Marker(repo=repo, revision="main", sha=sha, files=tuple(entries), completed_at=completed_at),
    )
    return root


def run_model_repo(
    weights_dir: Path,
    output: Path,
    *,
    serving: dict[str, object] | str | None = None,
    kind: str = "KIND_CPU",
    model_name: str = MODEL_NAME,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """The `model-repo` subcommand as the init container runs it (a real subprocess)."""
    serving_json = (
        serving if isinstance(serving, str) else json.dumps(DEFAULT_SERVING if serving is None else serving)
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lpbyoc_worker.cli",
            "model-repo",
            "--weights-dir",
            str(weights_dir),
            "--output",
            str(output),
            "--model-name",
            model_name,
            "--serving-json",
            serving_json,
            "--kind",
            kind,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(closing(socket.socket())) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def start_on_free_ports(
    repository: Path, models: tuple[str, ...], workdir: Path, *, gpu: bool = False, timeout: float
) -> TritonServer:
    """A started tritonserver for `models` on free loopback ports (another pick if one was taken)."""
    for attempt in range(PORT_ATTEMPTS):
        http_port, grpc_port, metrics_port = free_ports(3)
        server = TritonServer(
            TritonOptions(
                model_repository=repository,
                models=models,
                http_port=http_port,
                grpc_port=grpc_port,
                metrics_port=metrics_port,
                exit_timeout_s=5,
                gpu=gpu,
            ),
            runtime_dir=workdir / "triton",
            log_path=workdir / f"tritonserver-{attempt}.log",
        )
        try:
            server.start(timeout=timeout)
            return server
        except TritonStartError as exc:
            # Another process took one of the free ports between our probe and Triton's bind.
            if "already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class RunningTriton:
    server: TritonServer
    model_name: str
    torchscript_path: Path
    model_repository: Path
    weights_dir: Path

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def module(self) -> torch.jit.ScriptModule:
        return torch.jit.load(str(self.torchscript_path)).eval()

    def start(self) -> None:
        self.server.start(timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        self.server.kill()


@contextmanager
def running_triton(
    workdir: Path,
    *,
    serving: dict[str, object] | None = None,
    model_name: str = MODEL_NAME,
    kind: str = "KIND_CPU",
) -> Iterator[RunningTriton]:
    """Snapshot → model-repo → tritonserver on free loopback ports; stopped on exit.

    `kind="KIND_GPU"` serves the model on the GPU (needs one, and a CUDA build of torch).
    """
    torchscript = workdir / "build" / "model.pt"
    build_torchscript(torchscript)
    weights_dir = write_snapshot(workdir / "cache", {"model.pt": torchscript, "README.md": b"tiny conv\n"})
    repository = workdir / "models"
    result = run_model_repo(weights_dir, repository, serving=serving, model_name=model_name, kind=kind)
    if result.returncode != 0:
        raise RuntimeError(f"model-repo failed ({result.returncode}): {result.stderr}")
    server = start_on_free_ports(
        repository, (model_name,), workdir, gpu=kind == "KIND_GPU", timeout=START_TIMEOUT_S
    )
    handle = RunningTriton(
        server=server,
        model_name=model_name,
        torchscript_path=weights_dir / "model.pt",
        model_repository=repository,
        weights_dir=weights_dir,
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTriton]:
    """One tritonserver for the whole session; tests that kill it must `start()` it again."""
    with running_triton(tmp_path_factory.mktemp("triton")) as handle:
        yield handle
