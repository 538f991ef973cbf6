"""One prefetch run: plan, reuse what is intact, fetch the rest in parallel, move, write the marker last."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from lpbyoc_worker.runtimes import detect
from lpbyoc_worker.weights import (
    ManifestEntry,
    Marker,
    SnapshotError,
    file_problem,
    partial_dir,
    read_marker,
    remove_marker,
    sha256_file,
    snapshot_dir,
    write_marker,
)

from .plan import Plan, RemoteFile, make_plan
from .progress import Progress
from .result import DISK_FULL, NETWORK_ERROR, SUCCEEDED, PrefetchError, Result
from .transfer import Aborted, ContentHashes, FileFetcher, TransferSettings
from .transport import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefetchRequest:
    repo: str
    revision: str
    cache_dir: Path
    endpoint: str
    token: str | None = None
    allow: Sequence[str] = ()
    ignore: Sequence[str] = ()
    verify: bool = False
    variant: str | None = None  # diffusers/transformers weight variant the default patterns pick
    parallel: int = 4
    transfer: TransferSettings = field(default_factory=TransferSettings)


def prefetch(request: PrefetchRequest, progress: Progress) -> Result:
    """Make `<cache>/models/<repo>/<sha>` complete for the request; raises PrefetchError on failure."""
    api = HfApi(endpoint=request.endpoint, token=request.token or False)
    plan = _plan_with_retries(api, request)
    log.info(
        "%s@%s is commit %s: %d files, %d bytes",
        plan.repo,
        plan.revision,
        plan.sha,
        len(plan.files),
        plan.total_bytes,
    )
    progress.start(sha=plan.sha, bytes_total=plan.total_bytes, files_total=len(plan.files))
    with snapshot_lock(request.cache_dir, plan.repo, plan.sha):
        return _complete_snapshot(request, plan, progress)


def _plan_with_retries(api: HfApi, request: PrefetchRequest) -> Plan:
    """Resolve and list with the transfer's retry budget: a Hub hiccup should not fail the Job."""
    settings = request.transfer
    failures = 0
    while True:
        try:
            return make_plan(
                api, request.repo, request.revision, request.allow, request.ignore, request.variant
            )
        except PrefetchError as exc:
            failures += 1
            if exc.reason != NETWORK_ERROR or failures > settings.max_retries:
                raise
            delay = settings.backoff(failures)
            log.warning(
                "resolving %s@%s: %s; retry %d/%d in %.1fs",
                request.repo,
                request.revision,
                exc.message,
                failures,
                settings.max_retries,
                delay,
            )
            time.sleep(delay)


def _complete_snapshot(request: PrefetchRequest, plan: Plan, progress: Progress) -> Result:
    snap = snapshot_dir(request.cache_dir, plan.repo, plan.sha)
    partial = partial_dir(request.cache_dir, plan.repo, plan.sha)

    progress.set_state("verifying")
    marker = _existing_marker(request.cache_dir, plan)
    kept, todo, damaged = _sort_out(plan, snap, marker, check_hash=request.verify)
    for entry in kept.values():
        progress.add_present(entry.size)
        progress.file_done()
    if marker is not None and not todo:
        log.info("snapshot %s is already complete; nothing to download", snap)
        progress.set_state("done")
        return _result(plan, "already complete in the cache", downloaded=0, model=describe(snap, plan))
    if damaged:
        log.warning("damaged files in the snapshot, fetching them again: %s", "; ".join(damaged[:10]))
        remove_marker(request.cache_dir, plan.repo, plan.sha)  # the worker must not start on it meanwhile

    partial.mkdir(parents=True, exist_ok=True)
    for remote in todo:
        part = partial / remote.path
        if part.exists():
            progress.add_present(min(part.stat().st_size, remote.size))
    _check_free_space(request.cache_dir, todo, partial)

    progress.set_state("downloading")
    snap.mkdir(parents=True, exist_ok=True)
    fetched = _fetch_all(request, plan, todo, partial, snap, progress)

    progress.set_state("verifying")
    entries = {**_other_entries(marker, plan, snap), **kept, **fetched}
    model = describe(snap, plan)
    write_marker(
        request.cache_dir,
        Marker(
            repo=plan.repo,
            revision=plan.revision,
            sha=plan.sha,
            files=tuple(entries[p] for p in sorted(entries)),
            completed_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            model=model,
        ),
    )
    _remove_partial(request.cache_dir, partial)
    progress.set_state("done")
    return _result(
        plan,
        f"downloaded {progress.bytes_downloaded} bytes",
        downloaded=progress.bytes_downloaded,
        model=model,
    )


def describe(snap: Path, plan: Plan) -> dict[str, Any] | None:
    """What the complete snapshot is (detect.SnapshotInfo JSON) plus what the Hub says about it.

    Reads configs and safetensors headers only; a failure here never fails the prefetch.
    """
    try:
        info = detect.inspect_snapshot(snap).to_json()
    except Exception:  # odd content must not cost the download; the worker inspects again
        log.exception("could not inspect snapshot %s", snap)
        return None
    return {**info, **plan.hub}


@contextlib.contextmanager
def snapshot_lock(cache_dir: Path, repo: str, sha: str) -> Iterator[None]:
    """One writer per (repo, sha): a branch and its sha, or two pattern sets, may be two Jobs at once.

    The lock file stays (unlinking a lock file others wait on would let two writers in).
    """
    partial = partial_dir(cache_dir, repo, sha)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial.parent / f"{sha}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another prefetch of %s@%s is running; waiting for it", repo, sha[:12])
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _result(plan: Plan, detail: str, *, downloaded: int, model: dict[str, Any] | None = None) -> Result:
    message = f"{plan.repo}@{plan.revision} is commit {plan.sha}: {len(plan.files)} files, {plan.total_bytes} bytes; {detail}"
    return Result(
        reason=SUCCEEDED,
        message=message,
        sha=plan.sha,
        bytes=plan.total_bytes,
        files=len(plan.files),
        bytes_downloaded=downloaded,
        model=model,
    )


def _existing_marker(cache_dir: Path, plan: Plan) -> Marker | None:
    try:
        return read_marker(cache_dir, plan.repo, plan.sha)
    except SnapshotError as exc:
        if (snapshot_dir(cache_dir, plan.repo, plan.sha)).exists():
            log.info("no valid marker yet: %s", exc)
        return None


def _sort_out(
    plan: Plan, snap: Path, marker: Marker | None, *, check_hash: bool
) -> tuple[dict[str, ManifestEntry], list[RemoteFile], list[str]]:
    """Split the plan into files already intact in the snapshot, files to fetch, and damage found."""
    manifest = {e.path: e for e in marker.files} if marker is not None else {}
    kept: dict[str, ManifestEntry] = {}
    todo: list[RemoteFile] = []
    damaged: list[str] = []
    for remote in plan.files:
        entry = manifest.get(remote.path)
        if entry is not None and _entry_matches(entry, remote):
            problem = file_problem(snap, entry, check_hash=check_hash)
            if problem is None:
                kept[remote.path] = entry
                continue
            damaged.append(problem)
        elif (snap / remote.path).is_file():
            # Moved here by a run that was killed before writing the marker: trust it only after hashing.
            sha256 = _matching_sha256(snap / remote.path, remote)
            if sha256 is not None:
                kept[remote.path] = ManifestEntry(remote.path, remote.size, sha256)
                continue
        todo.append(remote)
    return kept, todo, damaged


def _entry_matches(entry: ManifestEntry, remote: RemoteFile) -> bool:
    return entry.size == remote.size and (remote.sha256 is None or entry.sha256 == remote.sha256)


def _matching_sha256(path: Path, remote: RemoteFile) -> str | None:
    if path.stat().st_size != remote.size:
        return None
    if remote.sha256 is not None:
        return remote.sha256 if sha256_file(path) == remote.sha256 else None
    hashes = ContentHashes(remote)
    hashes.update_from_file(path, remote.size)
    if hashes.git is not None and hashes.git.hexdigest() != remote.git_oid:
        return None
    return hashes.sha256.hexdigest()


def _other_entries(marker: Marker | None, plan: Plan, snap: Path) -> dict[str, ManifestEntry]:
    """Files a previous request with other patterns put in this snapshot, still intact by size."""
    if marker is None:
        return {}
    planned = {f.path for f in plan.files}
    return {
        e.path: e
        for e in marker.files
        if e.path not in planned and file_problem(snap, e, check_hash=False) is None
    }


def _check_free_space(cache_dir: Path, todo: Sequence[RemoteFile], partial: Path) -> None:
    needed = 0
    for remote in todo:
        part = partial / remote.path
        have = part.stat().st_size if part.exists() else 0
        needed += max(0, remote.size - have)
    free = shutil.disk_usage(cache_dir).free
    if needed > free:
        raise PrefetchError(
            DISK_FULL,
            f"the cache volume has {free} bytes free but {needed} more are needed; grow the volume "
            "(spec.cache size) or free space",
        )


def _fetch_all(
    request: PrefetchRequest,
    plan: Plan,
    todo: Sequence[RemoteFile],
    partial: Path,
    snap: Path,
    progress: Progress,
) -> dict[str, ManifestEntry]:
    abort = threading.Event()
    fetched: dict[str, ManifestEntry] = {}
    settings = request.transfer
    transport = Transport(timeout=settings.stall_timeout)
    try:
        fetcher = FileFetcher(
            transport=transport,
            endpoint=request.endpoint,
            token=request.token,
            repo=plan.repo,
            sha=plan.sha,
            partial_root=partial,
            settings=settings,
            progress=progress,
            abort=abort,
        )

        def fetch_and_move(remote: RemoteFile) -> None:
            part, sha256 = fetcher.fetch(remote)
            target = snap / remote.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)  # same volume: atomic, and the file was verified first
            fetched[remote.path] = ManifestEntry(remote.path, remote.size, sha256)
            progress.file_done()

        # Largest first keeps the pool busy to the end instead of waiting on one big straggler.
        ordered = sorted(todo, key=lambda f: -f.size)
        with ThreadPoolExecutor(max_workers=max(1, request.parallel), thread_name_prefix="fetch") as pool:
            futures: list[Future[None]] = [pool.submit(fetch_and_move, remote) for remote in ordered]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failures = [f.exception() for f in done if f.exception() is not None]
            if failures:
                abort.set()
                pool.shutdown(wait=True, cancel_futures=True)
                failures += [
                    f.exception()
                    for f in futures
                    if f.done() and not f.cancelled() and f not in done and f.exception() is not None
                ]
                raise _first_real_failure(failures)
    finally:
        transport.close()
    return fetched


def _first_real_failure(failures: list[BaseException | None]) -> BaseException:
    # Prefer a reasoned failure; the other files were merely aborted because of it.
    for exc in failures:
        if isinstance(exc, PrefetchError):
            return exc
    for exc in failures:
        if exc is not None and not isinstance(exc, Aborted):
            return exc
    return next(exc for exc in failures if exc is not None)


def _remove_partial(cache_dir: Path, partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    root = Path(cache_dir) / ".partial"
    parent = partial.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only when empty: another sha may be in flight
        except OSError:
            break
        parent = parent.parent
