"""The weights cache on the PVC: where a snapshot lives, its completion marker, and its verification.

Layout (docs/architecture.md, "The weights cache"):
    <cache>/models/<owner>--<name>/<sha>/...files...            complete snapshot
    <cache>/models/<owner>--<name>/<sha>/.lpbyoc-complete.json  marker + manifest, written last
    <cache>/.partial/<owner>--<name>/<sha>/...                  in-flight files (kept for resume)

Both the prefetcher (writes) and the worker (refuses to start without a valid marker) use this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARKER_NAME = ".lpbyoc-complete.json"
HASH_CHUNK = 8 * 1024 * 1024
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class SnapshotError(Exception):
    """The cache holds no usable snapshot for the asked (repo, sha)."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Marker:
    repo: str
    revision: str
    sha: str
    files: tuple[ManifestEntry, ...]
    completed_at: str
    # What the snapshot is (runtimes.detect.SnapshotInfo.to_json() plus the Hub's libraryName and
    # pipelineTag); None in markers written before the prefetcher recorded it.
    model: dict[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "repo": self.repo,
            "revision": self.revision,
            "sha": self.sha,
            "files": [asdict(f) for f in self.files],
            "completedAt": self.completed_at,
        }
        if self.model is not None:
            data["model"] = self.model
        return data

    @classmethod
    def from_json(cls, data: Any) -> Marker:
        """Parse a marker, raising SnapshotError naming what is wrong with it."""
        if not isinstance(data, dict):
            raise SnapshotError("marker is not a JSON object")
        try:
            files = tuple(
                ManifestEntry(path=str(f["path"]), size=int(f["size"]), sha256=str(f["sha256"]))
                for f in data["files"]
            )
            return cls(
                repo=str(data["repo"]),
                revision=str(data["revision"]),
                sha=str(data["sha"]),
                files=files,
                completed_at=str(data["completedAt"]),
                model=data["model"] if isinstance(data.get("model"), dict) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"marker is malformed: {exc!r}") from exc


def repo_dirname(repo: str) -> str:
    """`owner/name` → `owner--name`; a repo id without owner stays `name`."""
    parts = repo.split("/")
    if len(parts) > 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise SnapshotError(f"invalid repo id {repo!r}: expected 'name' or 'owner/name'")
    return "--".join(parts)


def snapshot_dir(cache_dir: Path | str, repo: str, sha: str) -> Path:
    return Path(cache_dir) / "models" / repo_dirname(repo) / _checked_sha(sha)


def partial_dir(cache_dir: Path | str, repo: str, sha: str) -> Path:
    return Path(cache_dir) / ".partial" / repo_dirname(repo) / _checked_sha(sha)


def marker_path(cache_dir: Path | str, repo: str, sha: str) -> Path:
    return snapshot_dir(cache_dir, repo, sha) / MARKER_NAME


def _checked_sha(sha: str) -> str:
    if not _SHA_RE.match(sha):
        raise SnapshotError(f"invalid commit sha {sha!r}: expected 40 lowercase hex characters")
    return sha


def safe_relpath(path: str) -> str:
    """Reject repo file paths that would escape the snapshot directory."""
    pure = Path(path)
    if not path or pure.is_absolute() or ".." in pure.parts or path.startswith("/"):
        raise SnapshotError(f"refusing unsafe file path {path!r} in the repo")
    return path


def read_marker(cache_dir: Path | str, repo: str, sha: str) -> Marker:
    path = marker_path(cache_dir, repo, sha)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        raise SnapshotError(
            f"no complete snapshot of {repo}@{sha} in {path.parent}: the marker {MARKER_NAME} is missing "
            "(the prefetch has not finished, or failed)"
        ) from None
    try:
        marker = Marker.from_json(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"marker {path} is not valid JSON: {exc}") from exc
    if marker.sha != sha or marker.repo != repo:
        raise SnapshotError(f"marker {path} is for {marker.repo}@{marker.sha}, not {repo}@{sha}")
    return marker


def write_marker(cache_dir: Path | str, marker: Marker) -> Path:
    """Write the marker atomically: temp file, fsync, rename, fsync the directory."""
    path = marker_path(cache_dir, marker.repo, marker.sha)
    tmp = path.with_name(f"{MARKER_NAME}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(marker.to_json(), fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def remove_marker(cache_dir: Path | str, repo: str, sha: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        marker_path(cache_dir, repo, sha).unlink()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(root: Path, entry: ManifestEntry, *, check_hash: bool) -> str | None:
    """Why `entry` is not intact under `root`, or None when it is."""
    path = root / safe_relpath(entry.path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{entry.path}: missing"
    if size != entry.size:
        return f"{entry.path}: size {size} != {entry.size}"
    if check_hash and sha256_file(path) != entry.sha256:
        return f"{entry.path}: sha256 mismatch"
    return None


def verify(
    cache_dir: Path | str, repo: str, sha: str, *, check_hash: bool = True, paths: Iterable[str] | None = None
) -> list[str]:
    """Check a snapshot against its marker; return the problems found (empty when intact).

    `check_hash=False` checks presence and sizes only (fast); `paths` limits the check to those files.
    Raises SnapshotError when there is no valid marker at all.
    """
    marker = read_marker(cache_dir, repo, sha)
    root = snapshot_dir(cache_dir, repo, sha)
    wanted = None if paths is None else set(paths)
    problems = []
    for entry in marker.files:
        if wanted is not None and entry.path not in wanted:
            continue
        problem = file_problem(root, entry, check_hash=check_hash)
        if problem:
            problems.append(problem)
    return problems


def find_snapshot(cache_dir: Path | str, repo: str, sha: str, *, check_hash: bool = False) -> Path:
    """The directory of a complete snapshot of repo@sha; SnapshotError saying why when there is none.

    By default sizes are checked (cheap, catches truncation); `check_hash=True` re-hashes every file.
    """
    problems = verify(cache_dir, repo, sha, check_hash=check_hash)
    if problems:
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise SnapshotError(f"snapshot of {repo}@{sha} is damaged: {shown}; rerun the prefetch with --verify")
    return snapshot_dir(cache_dir, repo, sha)
