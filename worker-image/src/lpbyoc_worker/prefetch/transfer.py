"""One file's bytes: ranged, resumable across processes, stall-aware, verified.

huggingface_hub deletes its temporary file when a process dies, so the transfer is done here:
the file grows under `<cache>/.partial/...` next to a small sidecar holding the ETag it was
started from (the tree listing's LFS sha256 or git blob id, which is what the Hub answers as
`X-Linked-Etag`/`ETag`); a later attempt (or process) continues with `Range` (+ `If-Range` to
the Hub itself) only when that ETag and the Hub's `X-Repo-Commit` still match, and starts over
otherwise. Every file is verified against the Hub's checksum before it leaves `.partial`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import hf_hub_url

from lpbyoc_worker.weights import HASH_CHUNK

from .plan import RemoteFile
from .progress import Progress
from .result import (
    CHECKSUM_MISMATCH,
    DISK_FULL,
    DOWNLOAD_STALLED,
    ENTRY_NOT_FOUND,
    NETWORK_ERROR,
    UNAUTHORIZED,
    PrefetchError,
)
from .transport import Response, Transport, TransportError

log = logging.getLogger(__name__)

ETAG_SUFFIX = ".lpbyoc-etag"
READ_BUFFER_BYTES = 1024 * 1024
WRITE_SLICE_BYTES = 128 * 1024  # moderate write sizes were the fastest page-cache copies measured here
PIPELINE_MIN_BYTES = 8 * 1024 * 1024  # below this a second thread costs more than it saves
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class TransferSettings:
    stall_timeout: float = 60.0
    max_retries: int = 5
    backoff_initial: float = 2.0
    backoff_max: float = 60.0

    def backoff(self, failures: int) -> float:
        """Bounded exponential backoff before retry number `failures` (1-based)."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1)))


class Aborted(Exception):
    """Another file failed for good; this transfer stops without a reason of its own."""


class _Retry(Exception):
    def __init__(self, message: str, *, stalled: bool) -> None:
        super().__init__(message)
        self.stalled = stalled


class _Mismatch(Exception):
    pass


class ContentHashes:
    """sha256 of the content, plus the git blob id when that is what the Hub gives for the file."""

    def __init__(self, remote: RemoteFile) -> None:
        self.remote = remote
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % self.remote.size) if self.remote.git_oid else None

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.git is not None:
            self.git.update(data)

    def update_from_file(self, path: Path, length: int) -> None:
        with open(path, "rb") as fh:
            left = length
            while left > 0 and (chunk := fh.read(min(HASH_CHUNK, left))):
                self.update(chunk)
                left -= len(chunk)


class HashPipeline:
    """Hashes received buffers on a second thread while the next one is read (hashlib drops the GIL).

    A small ring of buffers is recycled between the two threads, so memory stays bounded.
    """

    def __init__(self, hashes: ContentHashes, buffers: int = 32) -> None:
        self._hashes = hashes
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(memoryview(bytearray(READ_BUFFER_BYTES)))
        self._full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buffer, n = item
            self._hashes.update(buffer[:n])
            self._free.put(buffer)

    def take(self) -> memoryview:
        return self._free.get()

    def hash(self, buffer: memoryview, n: int) -> None:
        self._full.put((buffer, n))

    def close(self) -> None:
        """Wait until every handed-over buffer is hashed."""
        self._full.put(None)
        self._thread.join()


class FileFetcher:
    """Fetches files of one (repo, sha) into `partial_root`; one instance serves all download threads."""

    def __init__(
        self,
        *,
        transport: Transport,
        endpoint: str,
        token: str | None,
        repo: str,
        sha: str,
        partial_root: Path,
        settings: TransferSettings,
        progress: Progress,
        abort: threading.Event,
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.token = token
        self.repo = repo
        self.sha = sha
        self.partial_root = partial_root
        self.settings = settings
        self.progress = progress
        self.abort = abort

    def fetch(self, remote: RemoteFile) -> tuple[Path, str]:
        """Download and verify one file; return its partial path and sha256. Raises PrefetchError."""
        part = self.partial_root / remote.path
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._fetch_with_retries(remote, part)
            except _Mismatch:
                log.warning("%s: checksum mismatch, fetching it again from the start", remote.path)
                self._discard(part)
            try:
                return self._fetch_with_retries(remote, part)
            except _Mismatch:
                self._discard(part)
                raise PrefetchError(
                    CHECKSUM_MISMATCH,
                    f"{self.repo}@{self.sha[:12]} file {remote.path}: the downloaded bytes do not match the "
                    "Hub's checksum, twice",
                ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise PrefetchError(
                    DISK_FULL,
                    f"the cache volume is full while writing {remote.path} of {self.repo}; partial files are "
                    "kept so a retry on a larger volume resumes",
                ) from None
            raise

    def _discard(self, part: Path) -> None:
        size = part.stat().st_size if part.exists() else 0
        part.unlink(missing_ok=True)
        self.progress.discard(size)

    def _fetch_with_retries(self, remote: RemoteFile, part: Path) -> tuple[Path, str]:
        failures = 0
        while True:
            if self.abort.is_set():
                raise Aborted()
            before = part.stat().st_size if part.exists() else 0
            try:
                return self._attempt(remote, part)
            except _Retry as retry:
                after = part.stat().st_size if part.exists() else 0
                # A flaky link that keeps making progress is not out of budget; one that doesn't is.
                failures = 1 if after > before else failures + 1
                if failures > self.settings.max_retries:
                    if retry.stalled:
                        raise PrefetchError(
                            DOWNLOAD_STALLED,
                            f"{self.repo} file {remote.path}: no bytes for {self.settings.stall_timeout:g}s, "
                            f"{self.settings.max_retries} retries used ({after} of {remote.size} bytes on disk)",
                        ) from None
                    raise PrefetchError(
                        NETWORK_ERROR,
                        f"{self.repo} file {remote.path}: {retry}, {self.settings.max_retries} retries used",
                    ) from None
                delay = self.settings.backoff(failures)
                self.progress.retried()
                log.warning(
                    "%s: %s; retry %d/%d in %.1fs from byte %d",
                    remote.path,
                    retry,
                    failures,
                    self.settings.max_retries,
                    delay,
                    after,
                )
                if self.abort.wait(delay):
                    raise Aborted() from None

    def _attempt(self, remote: RemoteFile, part: Path) -> tuple[Path, str]:
        # The tree listing already names the bytes at this commit (LFS sha256 or git blob id), which
        # is also the ETag the Hub serves them under: no HEAD round trip per file is needed.
        etag = remote.etag
        etag_file = part.with_name(part.name + ETAG_SUFFIX)
        offset = part.stat().st_size if part.exists() else 0
        stored = etag_file.read_text() if etag_file.exists() else None
        if offset and (stored != etag or offset > remote.size):
            log.info("%s: partial file is from another version (ETag changed); starting over", remote.path)
            self._discard(part)
            offset = 0
        etag_file.write_text(etag)
        part.touch()
        hashes = ContentHashes(remote)
        hashes.update_from_file(part, offset)
        if offset < remote.size:
            url = hf_hub_url(self.repo, remote.path, revision=self.sha, endpoint=self.endpoint)
            offset = self._download(remote, part, url, etag, offset, hashes)
        if offset != remote.size:
            raise _Mismatch()
        sha256 = hashes.sha256.hexdigest()
        if remote.sha256 is not None and sha256 != remote.sha256:
            raise _Mismatch()
        if remote.git_oid is not None and hashes.git is not None and hashes.git.hexdigest() != remote.git_oid:
            raise _Mismatch()
        etag_file.unlink(missing_ok=True)
        return part, sha256

    def _download(
        self, remote: RemoteFile, part: Path, url: str, etag: str, offset: int, hashes: ContentHashes
    ) -> int:
        headers = {"Accept-Encoding": "identity", "User-Agent": "lpbyoc-prefetch"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"  # the transport drops it on a redirect to a CDN
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = f'"{etag}"'  # honoured by the Hub; dropped when redirected to a CDN
        try:
            response = self.transport.get(url, headers)
        except TransportError as exc:
            raise _Retry(str(exc), stalled=exc.stalled) from None
        try:
            self._check_origin(response, remote, part, etag, offset)
        except BaseException:
            response.close(reusable=False)
            raise
        pipeline = HashPipeline(hashes) if remote.size - offset >= PIPELINE_MIN_BYTES else None
        single = memoryview(bytearray(READ_BUFFER_BYTES))
        try:
            offset = self._check_response(response, remote, part, offset, hashes)
            with open(part, "r+b", buffering=0) as fh:
                fh.seek(offset)
                if part.stat().st_size > offset:
                    # Only when needed: ext4 flushes a file truncated to 0 on close (auto_da_alloc),
                    # which made every fresh download wait for the disk.
                    fh.truncate()
                while True:
                    if self.abort.is_set():
                        raise Aborted()
                    buffer = pipeline.take() if pipeline is not None else single
                    try:
                        n = response.readinto(buffer)
                    except TransportError as exc:
                        raise _Retry(str(exc), stalled=exc.stalled) from None
                    if n == 0:
                        break
                    for start in range(0, n, WRITE_SLICE_BYTES):  # OSError here is the disk: see fetch()
                        fh.write(buffer[start : min(n, start + WRITE_SLICE_BYTES)])
                    if pipeline is not None:
                        pipeline.hash(buffer, n)
                    else:
                        hashes.update(buffer[:n])
                    offset += n
                    self.progress.add_downloaded(n)
                    if offset > remote.size:
                        break
        finally:
            if pipeline is not None:
                pipeline.close()
            response.close()
        return offset

    def _check_origin(
        self, response: Response, remote: RemoteFile, part: Path, etag: str, offset: int
    ) -> None:
        """The Hub's own headers (on its redirect, or on the file) must name the commit and bytes asked for."""
        origin = response.origin_headers
        commit = origin.get("X-Repo-Commit")
        if commit and commit != self.sha:
            raise PrefetchError(
                NETWORK_ERROR,
                f"asked for {remote.path} at {self.sha[:12]}, the Hub served commit {commit[:12]}",
            )
        served = _normalize_etag(origin.get("X-Linked-Etag") or origin.get("ETag"))
        if offset and etag and served and served != etag:
            log.info("%s: the Hub serves another version (ETag changed); starting over", remote.path)
            self._discard(part)
            raise _Retry("the file changed on the Hub; restarting it", stalled=False)

    def _check_response(
        self, response: Response, remote: RemoteFile, part: Path, offset: int, hashes: ContentHashes
    ) -> int:
        """The offset the body starts at, after checking the status; raises for the failures."""
        status = response.status
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise _Retry(f"server answered a range from {start}, asked {offset}", stalled=False)
            return offset
        if status == 200:
            if offset:  # the server ignored the range or the file changed: start over
                self._discard(part)
                part.touch()
                hashes.reset()
            return 0
        if status == 416:
            self._discard(part)
            raise _Retry("range not satisfiable; restarting the file", stalled=False)
        what = f"{self.repo}@{self.sha[:12]} file {remote.path}"
        if status in (401, 403):
            raise PrefetchError(UNAUTHORIZED, f"the Hub refused {what} (HTTP {status}); check the token")
        if status == 404:
            raise PrefetchError(ENTRY_NOT_FOUND, f"{what} is gone (HTTP 404)")
        if status in _RETRYABLE_STATUS:
            raise _Retry(f"HTTP {status} for {what}", stalled=False)
        raise PrefetchError(NETWORK_ERROR, f"unexpected HTTP {status} for {what}")


def _normalize_etag(value: str | None) -> str | None:
    # ETag: W/"abc" or "abc" -> abc
    if not value:
        return None
    return value.removeprefix("W/").strip('"')


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None
