"""The tritonserver command line, built by a pure function from the worker's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lpbyoc_worker.tritonproc.install import TritonInstall

# Ports and address of the worker pod contract (docs/architecture.md): loopback inside the pod.
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_HTTP_PORT = 8010
DEFAULT_GRPC_PORT = 8011
DEFAULT_METRICS_PORT = 8012


@dataclass(frozen=True)
class TritonOptions:
    model_repository: Path
    models: tuple[str, ...] = ("model",)
    address: str = DEFAULT_ADDRESS
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    # GPU metrics and pinned host memory only make sense (and only work) with a GPU present.
    gpu: bool = False
    log_verbose: int = 0
    # How long a SIGTERM'd server waits for in-flight requests and open connections.
    exit_timeout_s: int = 30
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def server_argv(install: TritonInstall, options: TritonOptions) -> list[str]:
    argv = [
        str(install.binary),
        f"--model-repository={options.model_repository}",
        f"--backend-directory={install.backends_dir}",
        f"--cache-directory={install.caches_dir}",
        "--model-control-mode=explicit",
        *(f"--load-model={name}" for name in options.models),
        f"--http-address={options.address}",
        f"--http-port={options.http_port}",
        f"--grpc-address={options.address}",
        f"--grpc-port={options.grpc_port}",
        f"--metrics-address={options.address}",
        f"--metrics-port={options.metrics_port}",
        f"--allow-gpu-metrics={'true' if options.gpu else 'false'}",
        f"--log-verbose={options.log_verbose}",
        f"--exit-timeout-secs={options.exit_timeout_s}",
    ]
    if not options.gpu:
        argv.append("--pinned-memory-pool-byte-size=0")
    argv.extend(options.extra_args)
    return argv
