"""`lpbyoc-worker serve`: the adapter process of the worker pod.

With `--task TASK` the Triton model is a task model (`model-repo --task`) and the adapter serves
that task's ai-runner route and BYOC schema; it exits 3 with a message when the model Triton
serves is for another task. Without `--task` it serves the single-tensor TorchScript filter.

SIGTERM (or SIGINT) → readiness turns 503 and new jobs are refused, in-flight jobs get up to
`--drain-seconds` to finish, then the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from lpbyoc_worker.runtimes.registry import TASKS

from .app import Adapter, LiveRunner
from .imaging import ImageLimits
from .pipelines import pipeline_for
from .settings import AdapterSettings
from .taskcheck import task_verifier

log = logging.getLogger(__name__)

AUTH_TOKEN_ENV = "AUTH_TOKEN"
# The Triton model serves another task than --task (the operator shows the logged message).
EXIT_INCOMPATIBLE_MODEL = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--triton-grpc", default="127.0.0.1:8011", help="Triton gRPC host:port")
    parser.add_argument("--model-name", default="model", help="model name in the Triton repository")
    parser.add_argument(
        "--task",
        default=None,
        choices=sorted(TASKS),
        help="runtime task of the Triton model (its config parameter `task`); omit for a TorchScript filter",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=1,
        help="concurrent jobs; beyond it ai-runner routes queue, BYOC /v1/infer answers 503 + Retry-After",
    )
    parser.add_argument(
        "--queue-size", type=int, default=16, help="ai-runner requests that may wait for a slot (more: 500)"
    )
    parser.add_argument(
        "--queue-timeout", type=float, default=120.0, help="seconds an ai-runner request may wait (then: 500)"
    )
    parser.add_argument("--max-images-per-prompt", type=int, default=8)
    parser.add_argument("--capability", default="", help="capability name (reported, not enforced)")
    parser.add_argument(
        "--pipeline",
        default=None,
        help="go-livepeer pipeline name reported by /version (default: the task's route, or image-to-image)",
    )
    parser.add_argument(
        "--model-id", required=True, help="the model id clients must name (ai-runner model_id)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--max-side", type=int, default=4096, help="largest image side accepted, in pixels")
    parser.add_argument(
        "--drain-seconds", type=float, default=25.0, help="deadline for in-flight jobs on SIGTERM"
    )
    parser.add_argument("--ready-poll-seconds", type=float, default=1.0)
    parser.add_argument(
        "--max-pending-frames", type=int, default=2, help="live frames allowed to wait; older drop"
    )
    parser.add_argument("--triton-timeout", type=float, default=30.0, help="seconds one Triton call may take")
    parser.add_argument(
        "--live-runner",
        action="store_true",
        help="heartbeat to the orchestrator as a Live Runner (settings from LIVE_RUNNER_* variables)",
    )
    parser.add_argument("--log-level", default="INFO")


def default_pipeline(task: str | None) -> str:
    """The go-livepeer pipeline a task is served as: its ai-runner route, else live video."""
    if task is None:
        return "image-to-image"
    pipeline = pipeline_for(task)
    return pipeline.path.lstrip("/") if pipeline is not None else "live-video-to-video"


def settings_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> AdapterSettings:
    env = os.environ if environ is None else environ
    task = getattr(args, "task", None)
    return AdapterSettings(
        model_id=args.model_id,
        capability=args.capability,
        pipeline=args.pipeline or default_pipeline(task),
        task=task,
        queue_size=getattr(args, "queue_size", 16),
        queue_timeout=getattr(args, "queue_timeout", 120.0),
        max_images_per_prompt=getattr(args, "max_images_per_prompt", 8),
        host=args.host,
        port=args.port,
        capacity=args.capacity,
        max_body_bytes=args.max_body_bytes,
        limits=ImageLimits(max_side=args.max_side, max_pixels=args.max_side * args.max_side),
        auth_token=env.get(AUTH_TOKEN_ENV) or None,
        drain_seconds=args.drain_seconds,
        ready_poll_seconds=args.ready_poll_seconds,
        max_pending_frames=args.max_pending_frames,
    )


def build_live_runner(args: argparse.Namespace, environ: dict[str, str] | None = None) -> LiveRunner | None:
    """With `--live-runner`, the heartbeat configured from the LIVE_RUNNER_* variables."""
    if not args.live_runner:
        return None
    from lpbyoc_worker.liverunner import LiveRunnerConfig, LiveRunnerHeartbeat

    env = dict(os.environ if environ is None else environ)
    # The app and capacity are the capability's own: the command line carries them from the CR,
    # and an explicit LIVE_RUNNER_APP still wins for a live app named differently.
    overrides: dict[str, object] = {"capacity": args.capacity, "port": args.port}
    if not env.get("LIVE_RUNNER_APP") and args.capability:
        overrides["app"] = args.capability
    return LiveRunnerHeartbeat(LiveRunnerConfig.from_env(env, **overrides))


async def serve(settings: AdapterSettings, args: argparse.Namespace, live_runner: LiveRunner | None) -> int:
    from lpbyoc_worker.inference import TritonInference

    inference = TritonInference(args.triton_grpc, args.model_name, timeout_s=args.triton_timeout)
    backend: Any = inference
    verify = None
    if settings.task:
        from lpbyoc_worker.runtimes.backends import TritonTaskBackend

        backend = TritonTaskBackend(inference, settings.task)
        verify = task_verifier(inference, settings.task)
    adapter = Adapter(settings, backend, live_runner=live_runner, verify=verify)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await adapter.start()
    except OSError:
        await adapter.close()
        raise
    stopped = asyncio.create_task(stop.wait())
    fatal = asyncio.create_task(adapter.readiness.fatal_event.wait())
    await asyncio.wait({stopped, fatal}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (stopped, fatal):
        waiter.cancel()
    if adapter.readiness.fatal:
        log.error("cannot serve: %s", adapter.readiness.fatal)
        await adapter.close()
        return EXIT_INCOMPATIBLE_MODEL
    log.info("stopping: draining in-flight jobs for up to %.0fs", settings.drain_seconds)
    finished = await adapter.drain()
    await adapter.close()
    log.info("stopped (%s)", "drained" if finished else "drain deadline passed")
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_args(args)
        live_runner = build_live_runner(args)
    except ValueError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    try:
        return asyncio.run(serve(settings, args, live_runner))
    except OSError as exc:
        # Typically the port is taken or the address is not ours.
        log.error("cannot serve on %s:%s: %s", settings.host, settings.port, exc)
        return 1
