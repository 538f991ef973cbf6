"""`lpbyoc-worker prefetch`: pin a Hub revision and download it into the weights cache.

Runs in the operator's prefetch Job (docs/architecture.md, "Prefetch Job ⇄ operator"):
progress on `--progress-port`, the result as one JSON line in the termination log and on
stdout, exit 0 on success and 1 on failure. The token comes only from `HF_TOKEN`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from huggingface_hub import constants as hf_constants

from .progress import Progress, ProgressLogger, ProgressServer
from .result import INTERNAL_ERROR, PrefetchError, Result, emit_result
from .snapshot import PrefetchRequest, prefetch
from .transfer import TransferSettings

log = logging.getLogger("lpbyoc_worker.prefetch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="Hub repo id, 'owner/name' or 'name'")
    parser.add_argument(
        "--revision", default="main", help="branch, tag or commit sha (pinned to a sha first)"
    )
    parser.add_argument("--allow", action="append", default=[], metavar="PATTERN", help="only files matching")
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="PATTERN", help="skip files matching"
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="weight variant (e.g. fp16) the default file selection takes; ignored with --allow",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("/cache"), help="the weights cache volume")
    parser.add_argument(
        "--progress-port", type=int, default=9090, help="HTTP /progress and /metrics; 0: any, -1: off"
    )
    parser.add_argument(
        "--stall-timeout", type=float, default=60.0, help="seconds without bytes before a retry"
    )
    parser.add_argument("--max-retries", type=int, default=5, help="retries per file without progress")
    parser.add_argument(
        "--retry-backoff", type=float, default=2.0, help="first retry delay; doubles, max 60s"
    )
    parser.add_argument("--parallel", type=int, default=4, help="files downloaded at once")
    parser.add_argument(
        "--verify", action="store_true", help="re-hash an existing snapshot; re-fetch damaged files"
    )
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    parser.add_argument("--log-interval", type=float, default=10.0, help="seconds between progress log lines")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request drowns the useful ones
    # The token is read here and handed to the code that sends it; it is never put in a message.
    token = os.environ.get("HF_TOKEN") or None
    endpoint = (os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")
    request = PrefetchRequest(
        repo=args.repo,
        revision=args.revision,
        cache_dir=args.cache_dir,
        endpoint=endpoint,
        token=token,
        allow=tuple(args.allow),
        ignore=tuple(args.ignore),
        verify=args.verify,
        variant=args.variant or None,
        parallel=max(1, args.parallel),
        transfer=TransferSettings(
            stall_timeout=args.stall_timeout,
            max_retries=max(0, args.max_retries),
            backoff_initial=args.retry_backoff,
        ),
    )
    progress = Progress()
    with contextlib.ExitStack() as stack:
        if args.progress_port >= 0:
            try:
                server = stack.enter_context(ProgressServer(progress, args.progress_port))
                log.info("progress on :%d/progress and /metrics", server.port)
            except OSError as exc:  # the download matters more than its progress report
                log.warning(
                    "cannot serve progress on port %d (%s); downloading without it", args.progress_port, exc
                )
        stack.enter_context(ProgressLogger(progress, args.log_interval))
        result = _run(request, progress)
    emit_result(result, args.termination_log)
    return 0 if result.succeeded else 1


def _run(request: PrefetchRequest, progress: Progress) -> Result:
    try:
        result = prefetch(request, progress)
        log.info("%s", result.message)
        return result
    except PrefetchError as exc:
        failure = (exc.reason, exc.message)
    except Exception as exc:  # the Job must still report why; the traceback goes to the log only
        log.exception("prefetch failed unexpectedly")
        failure = (INTERNAL_ERROR, f"unexpected {type(exc).__name__}: {_scrub(str(exc), request.token)}")
    progress.set_state("failed")
    reason, message = failure
    message = _scrub(message, request.token)
    log.error("prefetch failed: %s: %s", reason, message)
    return Result(
        reason=reason,
        message=message,
        sha=progress.sha,
        bytes=progress.bytes_total,
        files=progress.files_total,
        bytes_downloaded=progress.bytes_downloaded,
    )


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text
