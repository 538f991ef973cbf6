"""What to fetch: the revision pinned to a commit sha and the filtered file list with sizes and hashes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import filter_repo_objects

from lpbyoc_worker.weights import SnapshotError, repo_dirname, safe_relpath

from .result import (
    ENTRY_NOT_FOUND,
    NETWORK_ERROR,
    REPO_NOT_FOUND,
    REVISION_NOT_FOUND,
    UNAUTHORIZED,
    PrefetchError,
)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the Hub's LFS sha256, when the file is in LFS
    git_oid: str | None  # the git blob id, which identifies a non-LFS file's bytes

    @property
    def etag(self) -> str:
        """What the Hub's resolve endpoint answers as (X-Linked-)ETag for these bytes."""
        return self.sha256 or self.git_oid or ""


@dataclass(frozen=True)
class Plan:
    repo: str
    revision: str
    sha: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def make_plan(
    api: HfApi, repo: str, revision: str, allow: Sequence[str] | None, ignore: Sequence[str] | None
) -> Plan:
    """Resolve `revision` to its commit sha, then list that commit (not the moving ref) and filter it."""
    try:
        repo_dirname(repo)
    except SnapshotError as exc:
        raise PrefetchError(REPO_NOT_FOUND, str(exc)) from None
    with hub_errors(repo, revision):
        info = api.model_info(repo, revision=revision)
        sha = info.sha
        if not sha:
            raise PrefetchError(REVISION_NOT_FOUND, f"the Hub returned no commit sha for {repo}@{revision}")
        entries = [
            e for e in api.list_repo_tree(repo, revision=sha, recursive=True) if isinstance(e, RepoFile)
        ]
    selected = filter_repo_objects(
        entries,
        allow_patterns=list(allow or []) or None,
        ignore_patterns=list(ignore or []) or None,
        key=_path,
    )
    files = []
    for entry in selected:
        try:
            path = safe_relpath(entry.path)
        except SnapshotError as exc:
            raise PrefetchError(ENTRY_NOT_FOUND, str(exc)) from exc
        files.append(
            RemoteFile(
                path=path,
                size=int(entry.size),
                sha256=entry.lfs.sha256 if entry.lfs is not None else None,
                git_oid=entry.blob_id if entry.lfs is None else None,
            )
        )
    if not files:
        raise PrefetchError(
            ENTRY_NOT_FOUND,
            f"no file of {repo}@{sha[:12]} matches allow={list(allow or [])} ignore={list(ignore or [])}",
        )
    return Plan(repo=repo, revision=revision, sha=sha, files=tuple(sorted(files, key=_path)))


def _path(entry: RepoFile | RemoteFile) -> str:
    return entry.path


@contextlib.contextmanager
def hub_errors(repo: str, revision: str, path: str | None = None) -> Iterator[None]:
    """Translate huggingface_hub and httpx failures into PrefetchError with a contract reason.

    Messages name the repo and revision, never the request headers (the token lives there).
    """
    try:
        yield
    except PrefetchError:
        raise
    except Exception as exc:
        mapped = classify(exc, repo, revision, path)
        if mapped is None:
            raise
        raise mapped from exc


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def classify(exc: BaseException, repo: str, revision: str, path: str | None = None) -> PrefetchError | None:
    """The PrefetchError for a Hub/HTTP failure, or None when it is not one."""
    status = http_status(exc)
    what = f"{repo}@{revision}" + (f" file {path}" if path else "")
    if status in (401, 403) or isinstance(exc, GatedRepoError):
        return PrefetchError(
            UNAUTHORIZED,
            f"the Hub refused access to {what} (HTTP {status}): the repository is private or gated and needs a "
            "token with read access (spec.model.tokenSecretRef), the token is invalid, or the repository does "
            "not exist",
        )
    if isinstance(exc, HFValidationError):
        return PrefetchError(REPO_NOT_FOUND, f"{what} is not a valid Hub reference: {exc}")
    if isinstance(exc, RevisionNotFoundError):
        return PrefetchError(REVISION_NOT_FOUND, f"revision {revision!r} does not exist in {repo}")
    if isinstance(exc, RepositoryNotFoundError):
        return PrefetchError(REPO_NOT_FOUND, f"repository {repo} does not exist on the Hub")
    if isinstance(exc, EntryNotFoundError):
        return PrefetchError(ENTRY_NOT_FOUND, f"{what} does not exist")
    if isinstance(exc, HfHubHTTPError | httpx.HTTPError) or _is_httpx2_error(exc):
        detail = f"HTTP {status}" if status is not None else type(exc).__name__
        return PrefetchError(NETWORK_ERROR, f"talking to the Hub about {what} failed: {detail}")
    return None


def _is_httpx2_error(exc: BaseException) -> bool:
    # huggingface_hub 2.x ships its own httpx fork (`httpx2`); match its transport errors by module.
    return type(exc).__module__.split(".")[0] in ("httpx2", "httpcore", "httpcore2")
