"""`lpbyoc-worker triton`: prepare and exec tritonserver on the generated model repository.

The process is replaced by tritonserver (exec), so Kubernetes' SIGTERM reaches the server
itself, which drains in-flight requests before exiting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from lpbyoc_worker.tritonproc.install import (
    TritonInstall,
    TritonNotFound,
    locate_triton,
    prepare_runtime,
    server_environment,
)
from lpbyoc_worker.tritonproc.options import (
    DEFAULT_ADDRESS,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_METRICS_PORT,
    TritonOptions,
    server_argv,
)


def gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument(
        "--model", action="append", dest="models", help="model to load (repeatable; default: model)"
    )
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help="listen address for HTTP, gRPC and metrics"
    )
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT)
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT)
    parser.add_argument("--tritonserver", help="path of the tritonserver binary (default: search)")
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="writable directory for the server tree when it comes from the pytriton wheel (default: under $TMPDIR)",
    )
    parser.add_argument(
        "--gpu", choices=["auto", "yes", "no"], default="auto", help="GPU metrics and pinned memory"
    )
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--print-command", action="store_true", help="print the command line and exit")


def run(args: argparse.Namespace) -> int:
    if not args.model_repository.is_dir():
        print(f"triton: error: model repository {args.model_repository} does not exist", file=sys.stderr)
        return 2
    try:
        install = locate_triton(args.tritonserver)
        if args.print_command and install.needs_runtime_copy:
            # Show where the runtime tree would go without copying it.
            runtime_dir = args.runtime_dir or Path(tempfile.gettempdir()) / "lpbyoc-triton-XXXXXX"
            install = TritonInstall(root=runtime_dir, libs_dir=install.libs_dir)
        elif install.needs_runtime_copy:
            runtime_dir = args.runtime_dir or Path(tempfile.mkdtemp(prefix="lpbyoc-triton-"))
            install = prepare_runtime(install, runtime_dir)
    except (TritonNotFound, OSError) as exc:
        print(f"triton: error: {exc}", file=sys.stderr)
        return 2
    options = TritonOptions(
        model_repository=args.model_repository.resolve(),
        models=tuple(args.models or ["model"]),
        address=args.address,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        gpu=gpu_present() if args.gpu == "auto" else args.gpu == "yes",
        log_verbose=args.log_verbose,
    )
    argv = server_argv(install, options)
    if args.print_command:
        print(" ".join(argv))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, server_environment(install))
