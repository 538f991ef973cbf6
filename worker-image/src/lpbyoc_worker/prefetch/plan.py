"""What to fetch: the revision pinned to a commit sha and the filtered file list with sizes and hashes."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    # What the Hub says about the model: {"libraryName", "pipelineTag"} when it says it.
    hub: dict[str, Any] = field(default_factory=dict)
    layout: str = "patterns"  # "patterns" (the user's allow patterns) or what select_default_files saw

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def make_plan(
    api: HfApi,
    repo: str,
    revision: str,
    allow: Sequence[str] | None,
    ignore: Sequence[str] | None,
    variant: str | None = None,
) -> Plan:
    """Resolve `revision` to its commit sha, then list that commit (not the moving ref) and filter it.

    Without allow patterns the files are those the detected format loads (`select_default_files`).
    """
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
    layout = "patterns"
    if not allow:
        selection = select_default_files([e.path for e in entries], variant)
        layout = selection.layout
        chosen = set(selection.paths)
        entries = [e for e in entries if e.path in chosen]
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
    return Plan(
        repo=repo,
        revision=revision,
        sha=sha,
        files=tuple(sorted(files, key=_path)),
        hub=hub_model_info(info),
        layout=layout,
    )


def hub_model_info(info: Any) -> dict[str, Any]:
    """The Hub's `library_name` and `pipeline_tag` (top level, else the model card's), when given."""
    card = getattr(info, "card_data", None)
    out: dict[str, Any] = {}
    for key, attr in (("libraryName", "library_name"), ("pipelineTag", "pipeline_tag")):
        value = getattr(info, attr, None) or (card.get(attr) if card is not None else None)
        if isinstance(value, str) and value:
            out[key] = value[:64]
    return out


# ----- default file selection by detected format (no allow patterns given) ------------------------

DIFFUSERS_INDEX = "model_index.json"
TRANSFORMERS_CONFIG = "config.json"
# Files a loader reads beside the weights: configs, tokenizer/processor files, vocabularies.
_SIDECAR_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
# pytorch pickles that are weights (others, like training_args.bin, are not); every other weight
# format (*.ckpt, ONNX, Flax *.msgpack, TF *.h5, GGUF) is never chosen by default.
_BIN_WEIGHT_PREFIXES = ("pytorch_model", "diffusion_pytorch_model", "model")
_SHARD_RE = re.compile(r"-\d{5}-of-\d{5}$")
_INDEX_RE = re.compile(r"^(?P<stem>.+)\.(?P<kind>safetensors|bin)\.index(?:\.(?P<variant>[^.]+))?\.json$")


@dataclass(frozen=True)
class DefaultSelection:
    """What the default patterns chose: the detected layout and the file paths to fetch."""

    layout: str  # "diffusers" | "transformers" | "all"
    paths: tuple[str, ...]


def _weight_kind(name: str) -> tuple[str, str | None] | None:
    """("safetensors"|"bin", variant) for a weight file or its shard index; None for anything else.

    `diffusion_pytorch_model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors` and
    `model.safetensors.index.fp16.json` are variant "fp16"; `model.safetensors` has none.
    """
    index = _INDEX_RE.match(name)
    if index is not None:
        return index["kind"], index["variant"]
    for kind in ("safetensors", "bin"):
        if kind == "bin" and not name.startswith(_BIN_WEIGHT_PREFIXES):
            continue
        if name.endswith(f".{kind}"):
            stem = _SHARD_RE.sub("", name[: -len(kind) - 1])
            _, dot, variant = stem.rpartition(".")
            return kind, (variant if dot and variant else None)
    return None


def _pick_weights(names: Sequence[str], variant: str | None) -> list[str]:
    """The weight files (and shard indexes) of one component directory that its loader reads.

    safetensors over pytorch .bin; with a variant its files, falling back to the plain ones;
    without one the plain files, falling back to a variant when the component has only those.
    """
    by_kind: dict[str, dict[str | None, list[str]]] = {}
    for name in names:
        kind = _weight_kind(name)
        if kind is not None:
            by_kind.setdefault(kind[0], {}).setdefault(kind[1], []).append(name)
    groups = by_kind.get("safetensors") or by_kind.get("bin") or {}
    if not groups:
        return []
    if variant is not None and variant in groups:
        return groups[variant]
    if None in groups:
        return groups[None]
    preferred = "fp16" if "fp16" in groups else sorted(v for v in groups if v is not None)[0]
    return groups[preferred]


def _is_sidecar(name: str) -> bool:
    return name.endswith(_SIDECAR_SUFFIXES) and _weight_kind(name) is None


def _select_dir(names: Sequence[str], variant: str | None) -> list[str]:
    return [n for n in names if _is_sidecar(n)] + _pick_weights(names, variant)


def select_default_files(paths: Sequence[str], variant: str | None = None) -> DefaultSelection:
    """The files a repo's detected format loads, decided from the Hub's file list alone (pure).

    - `model_index.json` at the top → diffusers: that file, and in each top-level component
      directory its configs/tokenizer files and weights (safetensors only when there are any, the
      `variant` files when asked and present); top-level single-file checkpoints, `*.ckpt`, ONNX,
      Flax and TF weights are left out.
    - `config.json` and safetensors or pytorch weights at the top → transformers: the top-level
      configs/tokenizer/processor files and weights, chosen the same way.
    - otherwise every file (the behaviour without format detection).
    """
    top = [p for p in paths if "/" not in p]
    if DIFFUSERS_INDEX in top:
        dirs: dict[str, list[str]] = {}
        for path in paths:
            head, sep, tail = path.partition("/")
            if sep and "/" not in tail and not head.startswith("."):
                dirs.setdefault(head, []).append(tail)
        chosen = [DIFFUSERS_INDEX]
        for head, names in sorted(dirs.items()):
            chosen += [f"{head}/{name}" for name in _select_dir(names, variant)]
        return DefaultSelection("diffusers", tuple(sorted(chosen)))
    top_weights = _pick_weights(top, variant)
    if TRANSFORMERS_CONFIG in top and top_weights:
        chosen = [n for n in top if _is_sidecar(n)] + top_weights
        return DefaultSelection("transformers", tuple(sorted(chosen)))
    return DefaultSelection("all", tuple(sorted(paths)))


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
