"""Write the Triton model repository for one cached snapshot.

Four shapes of snapshot are served, detected in this order (runtimes/detect.py):
- diffusers (`model_index.json`) and transformers (`config.json` with `architectures`): a
  python-backend model (`hf_backend.py`) that loads the snapshot in place with the task's runtime;
  the snapshot must serve the task, or generation fails naming the class, the task and the fix;
- TorchScript: `model.pt` (or the one `*.pt`/`*.pts` TorchScript file) + generated config.pbtxt and
  the python-backend model.py from `torchscript_backend.py`;
- a Triton model directory already (`config.pbtxt` at the top, or in its only model directory):
  served as is, renamed to the served model name.
Weights are linked, not copied: the snapshot lives on the cache volume, which the Triton container
mounts at the same path.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lpbyoc_worker.modelrepo.config import (
    TORCHSCRIPT_FILENAME,
    InstanceKind,
    parse_pbtxt,
    task_model_config,
    to_pbtxt,
    torchscript_model_config,
)
from lpbyoc_worker.modelrepo.serving import TritonServing
from lpbyoc_worker.runtimes import detect
from lpbyoc_worker.runtimes.base import IncompatibleModel
from lpbyoc_worker.weights import MARKER_NAME, Marker, SnapshotError, file_problem

BACKEND_SOURCE = Path(__file__).with_name("torchscript_backend.py")
TASK_BACKEND_SOURCE = Path(__file__).with_name("hf_backend.py")
HF_FORMATS = (detect.DIFFUSERS, detect.TRANSFORMERS)
TORCHSCRIPT_SUFFIXES = (".pt", ".pts")
VERSION = "1"


class ModelRepoError(ValueError):
    """The snapshot cannot be turned into a model repository; the message says why and what to do."""


@dataclass(frozen=True)
class GeneratedModel:
    directory: Path
    model_format: str  # "diffusers", "transformers", "torchscript" or "tritonRepository"
    source: Path  # the snapshot (HF formats), the TorchScript file or the snapshot's model directory
    task: str | None = None
    class_name: str | None = None


def check_snapshot(weights_dir: Path) -> Marker:
    """The snapshot's completion marker, after checking every listed file is present at its size."""
    marker_file = weights_dir / MARKER_NAME
    try:
        marker = Marker.from_json(json.loads(marker_file.read_text()))
    except FileNotFoundError:
        raise ModelRepoError(
            f"{weights_dir} has no completion marker {MARKER_NAME}: the weights prefetch has not "
            "finished (or failed); the worker does not start on a partial snapshot"
        ) from None
    except (json.JSONDecodeError, SnapshotError) as exc:
        raise ModelRepoError(f"completion marker {marker_file} is invalid: {exc}") from None
    if re.fullmatch(r"[0-9a-f]{40}", weights_dir.name) and marker.sha != weights_dir.name:
        raise ModelRepoError(
            f"completion marker {marker_file} is for commit {marker.sha}, not {weights_dir.name}"
        )
    problems = [p for entry in marker.files if (p := file_problem(weights_dir, entry, check_hash=False))]
    if problems:
        raise ModelRepoError(f"snapshot {weights_dir} does not match its marker: {'; '.join(problems[:5])}")
    return marker


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry compiled `code/`; torch.save pickles (state dicts, eager modules) do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def find_torchscript(weights_dir: Path) -> Path:
    preferred = weights_dir / TORCHSCRIPT_FILENAME
    candidates = (
        [preferred]
        if preferred.is_file()
        else sorted(p for p in weights_dir.rglob("*") if p.is_file() and p.suffix in TORCHSCRIPT_SUFFIXES)
    )
    if not candidates:
        raise ModelRepoError(
            f"no TorchScript file in {weights_dir}: expected model.pt or a single *.pt/*.pts file "
            "(torch.jit.save of a scripted or traced module), or a config.pbtxt for a Triton repository"
        )
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(weights_dir)) for p in candidates)
        raise ModelRepoError(f"several TorchScript candidates in {weights_dir} ({names}): name one model.pt")
    found = candidates[0]
    if not is_torchscript(found):
        raise ModelRepoError(
            f"{found.relative_to(weights_dir)} is not TorchScript (a torch.save pickle, e.g. a state dict): "
            "export the module with torch.jit.script or torch.jit.trace and torch.jit.save"
        )
    return found


def find_triton_model_dir(weights_dir: Path) -> Path | None:
    if (weights_dir / "config.pbtxt").is_file():
        return weights_dir
    nested = sorted(p.parent for p in weights_dir.glob("*/config.pbtxt"))
    if len(nested) > 1:
        names = ", ".join(p.name for p in nested)
        raise ModelRepoError(f"{weights_dir} holds several Triton models ({names}); one model per capability")
    return nested[0] if nested else None


def _fresh_dir(path: Path) -> Path:
    # An init container may run again after a crash: start from an empty model directory.
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_torchscript_model(
    torchscript: Path, serving: TritonServing, output: Path, *, model_name: str, kind: InstanceKind
) -> Path:
    config = torchscript_model_config(serving, model_name=model_name, kind=kind)
    model_dir = _fresh_dir(output / model_name)
    version_dir = model_dir / VERSION
    version_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config))
    shutil.copyfile(BACKEND_SOURCE, version_dir / "model.py")
    (version_dir / TORCHSCRIPT_FILENAME).symlink_to(torchscript.resolve())
    return model_dir


def write_triton_model(source: Path, output: Path, *, model_name: str) -> Path:
    config_text = (source / "config.pbtxt").read_text()
    try:
        config = parse_pbtxt(config_text)
    except Exception as exc:  # protobuf's ParseError; message names line and column
        raise ModelRepoError(f"{source / 'config.pbtxt'} is not a valid Triton model config: {exc}") from None
    # Triton requires the configured name to match the directory it is served from.
    config.name = model_name
    model_dir = _fresh_dir(output / model_name)
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config))
    for entry in source.iterdir():
        if entry.name not in ("config.pbtxt", MARKER_NAME):
            (model_dir / entry.name).symlink_to(entry.resolve())
    return model_dir


def write_task_model(
    weights_dir: Path, task: str, serving: TritonServing, output: Path, *, model_name: str, kind: InstanceKind
) -> Path:
    from lpbyoc_worker.runtimes.registry import runtime_class

    config = task_model_config(
        runtime_class(task), serving, model_dir=str(weights_dir.resolve()), model_name=model_name, kind=kind
    )
    model_dir = _fresh_dir(output / model_name)
    version_dir = model_dir / VERSION
    version_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config))
    shutil.copyfile(TASK_BACKEND_SOURCE, version_dir / "model.py")
    return model_dir


def _hf_format(weights_dir: Path, model_format: str) -> detect.SnapshotInfo | None:
    """The snapshot's detection when it is (or is asked to be) a diffusers/transformers snapshot."""
    if model_format in ("torchscript", "tritonRepository"):
        return None
    info = detect.inspect_snapshot(weights_dir)
    if model_format in HF_FORMATS and info.format != model_format:
        expected = (
            "model_index.json" if model_format == detect.DIFFUSERS else "config.json with architectures"
        )
        raise ModelRepoError(
            f"modelFormat {model_format}, but {weights_dir} has no {expected} (detected: {info.format}); "
            "set modelFormat auto or fix model.allowPatterns"
        )
    return info if info.format in HF_FORMATS else None


def generate(
    weights_dir: Path,
    output: Path,
    serving: TritonServing,
    *,
    model_name: str,
    kind: InstanceKind,
    require_marker: bool = True,
    task: str | None = None,
) -> GeneratedModel:
    if not weights_dir.is_dir():
        raise ModelRepoError(f"weights directory {weights_dir} does not exist")
    if require_marker:
        check_snapshot(weights_dir)
    output.mkdir(parents=True, exist_ok=True)
    model_format = serving.model_format
    info = _hf_format(weights_dir, model_format)
    if info is not None:
        if not task:
            raise ModelRepoError(
                f"{info.format} {info.class_name} needs a task (it serves: {', '.join(info.tasks) or 'none'}): "
                "set the capability's pipeline or serving.task"
            )
        try:
            detect.check_serves(info, task)
        except IncompatibleModel as exc:
            raise ModelRepoError(str(exc)) from None
        directory = write_task_model(weights_dir, task, serving, output, model_name=model_name, kind=kind)
        return GeneratedModel(
            directory=directory,
            model_format=info.format,
            source=weights_dir,
            task=task,
            class_name=info.class_name,
        )
    triton_dir = find_triton_model_dir(weights_dir) if model_format != "torchscript" else None
    if model_format == "tritonRepository" and triton_dir is None:
        raise ModelRepoError(
            f"modelFormat tritonRepository, but {weights_dir} has no config.pbtxt (at the top or in one model directory)"
        )
    if triton_dir is not None:
        directory = write_triton_model(triton_dir, output, model_name=model_name)
        return GeneratedModel(directory=directory, model_format="tritonRepository", source=triton_dir)
    torchscript = find_torchscript(weights_dir)
    directory = write_torchscript_model(torchscript, serving, output, model_name=model_name, kind=kind)
    return GeneratedModel(directory=directory, model_format="torchscript", source=torchscript)
