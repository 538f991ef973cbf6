"""What a snapshot is and which tasks it can serve, from its files alone (no torch, no model load).

Used by the prefetcher (it records the answer in the manifest and the result JSON, so the operator
can refuse an incompatible model before scheduling a GPU), by `model-repo` (it picks the runtime)
and by the runtimes' tests. Order of detection (docs/architecture.md): `model_index.json` →
diffusers, `config.json` with `architectures` → transformers, then TorchScript, then a Triton
repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import IncompatibleModel

DIFFUSERS = "diffusers"
TRANSFORMERS = "transformers"
TORCHSCRIPT = "torchscript"
TRITON_REPOSITORY = "tritonRepository"
UNKNOWN = "unknown"

# diffusers pipeline classes (model_index.json `_class_name`) → the tasks a runtime serves from them.
# AutoPipelineForText2Image / AutoPipelineForImage2Image load either SD or SDXL layouts as both.
DIFFUSERS_TASKS: dict[str, tuple[str, ...]] = {
    "StableDiffusionPipeline": ("text-to-image", "image-to-image"),
    "StableDiffusionImg2ImgPipeline": ("text-to-image", "image-to-image"),
    "StableDiffusionXLPipeline": ("text-to-image", "image-to-image"),
    "StableDiffusionXLImg2ImgPipeline": ("text-to-image", "image-to-image"),
    "StableDiffusionUpscalePipeline": ("upscale",),
    "StableVideoDiffusionPipeline": ("image-to-video",),
}

# transformers architectures (config.json) → tasks. Suffix rules below cover families of heads.
TRANSFORMERS_TASKS: dict[str, tuple[str, ...]] = {
    "DepthAnythingForDepthEstimation": ("depth-estimation",),
    "DPTForDepthEstimation": ("depth-estimation",),
    "Sam2Model": ("segment-anything-2",),
    "BlipForConditionalGeneration": ("image-to-text",),
    "WhisperForConditionalGeneration": ("audio-to-text",),
}
TRANSFORMERS_SUFFIX_TASKS: tuple[tuple[str, str], ...] = (
    ("ForDepthEstimation", "depth-estimation"),
    ("ForSemanticSegmentation", "image-segmentation"),
)

# The files each family needs beside its weights, with what a user does when one is missing.
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer_config.json")

# go-livepeer pipelines whose task is the pipeline's own name; live video takes serving.task.
PIPELINE_TASKS = {
    "text-to-image": "text-to-image",
    "image-to-image": "image-to-image",
    "upscale": "upscale",
    "image-to-video": "image-to-video",
    "image-to-text": "image-to-text",
    "audio-to-text": "audio-to-text",
    "segment-anything-2": "segment-anything-2",
}
# Tasks a live-video capability can run frame by frame.
LIVE_TASKS = ("image-to-image", "depth-estimation", "image-segmentation")


@dataclass(frozen=True)
class SnapshotInfo:
    """What the snapshot says about itself; `to_json` is what the prefetch result carries."""

    format: str
    class_name: str | None = None  # diffusers `_class_name` or the first transformers architecture
    architectures: tuple[str, ...] = ()
    model_type: str | None = None
    weight_bytes: int = 0
    weight_dtype: str | None = None
    tasks: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())  # missing files that stop every task

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "className": self.class_name,
            "architectures": list(self.architectures),
            "modelType": self.model_type,
            "weightBytes": self.weight_bytes,
            "weightDtype": self.weight_dtype,
            "tasks": list(self.tasks),
            "problems": list(self.problems),
        }


def _read_json(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pts", ".ckpt", ".onnx", ".plan")


def weight_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def safetensors_dtype(path: Path) -> str | None:
    """The dominant dtype in a safetensors header (read without loading the tensors)."""
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length < 100 * 1024 * 1024:
                return None
            header = json.loads(fh.read(length))
    except (OSError, ValueError):
        return None
    counts: dict[str, int] = {}
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict) and "dtype" in entry:
            start, end = entry.get("data_offsets", (0, 0))
            counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + int(end) - int(start)
    return max(counts, key=lambda k: counts[k]) if counts else None


def _weights_summary(root: Path) -> tuple[int, str | None]:
    files = weight_files(root)
    dtypes: dict[str, int] = {}
    for path in files:
        if path.suffix == ".safetensors" and (dtype := safetensors_dtype(path)):
            dtypes[dtype] = dtypes.get(dtype, 0) + path.stat().st_size
    dtype = max(dtypes, key=lambda k: dtypes[k]) if dtypes else None
    return sum(p.stat().st_size for p in files), dtype


def transformers_tasks(architectures: Iterable[str]) -> tuple[str, ...]:
    tasks: list[str] = []
    for arch in architectures:
        found = [*TRANSFORMERS_TASKS.get(arch, ())]
        found += [task for suffix, task in TRANSFORMERS_SUFFIX_TASKS if arch.endswith(suffix)]
        for task in found:
            if task not in tasks:
                tasks.append(task)
    return tuple(tasks)


def _diffusers_problems(root: Path, index: Mapping[str, Any]) -> list[str]:
    problems = []
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[:1] == [None]:
            continue  # metadata, or an optional component the snapshot leaves out (safety_checker: null)
        if not (root / component).is_dir():
            problems.append(
                f"model_index.json lists component '{component}' but the snapshot has no {component}/ "
                "directory: add it to model.allowPatterns or fix the repository"
            )
        elif component.startswith("tokenizer") and not any(
            (root / component / name).is_file() for name in (*TOKENIZER_FILES, "merges.txt")
        ):
            problems.append(
                f"{component}/ has no tokenizer files ({', '.join(TOKENIZER_FILES)}): include them in "
                "model.allowPatterns"
            )
    return problems


def _transformers_problems(root: Path, tasks: tuple[str, ...]) -> list[str]:
    needs_preprocessor = {"depth-estimation", "image-segmentation", "segment-anything-2", "image-to-text"}
    problems = []
    needs_processor = needs_preprocessor.intersection(tasks) or "audio-to-text" in tasks
    if needs_processor and not any((root / name).is_file() for name in PREPROCESSOR_FILES):
        problems.append(
            "the snapshot has no preprocessor_config.json (or processor_config.json): the model's "
            "image/audio processor cannot be built; include it in model.allowPatterns"
        )
    needs_tokenizer = {"image-to-text", "audio-to-text"}.intersection(tasks)
    if needs_tokenizer and not any((root / name).is_file() for name in TOKENIZER_FILES):
        problems.append(
            f"the snapshot has no tokenizer files ({', '.join(TOKENIZER_FILES)}): text cannot be "
            "decoded; include them in model.allowPatterns"
        )
    return problems


def inspect_snapshot(root: Path) -> SnapshotInfo:
    """Classify a snapshot directory; never raises for odd content (the format is then `unknown`)."""
    weight_bytes, dtype = _weights_summary(root)
    index = _read_json(root / "model_index.json")
    if index is not None:
        class_name = str(index.get("_class_name") or "") or None
        tasks = DIFFUSERS_TASKS.get(class_name or "", ())
        return SnapshotInfo(
            format=DIFFUSERS,
            class_name=class_name,
            weight_bytes=weight_bytes,
            weight_dtype=dtype,
            tasks=tasks,
            problems=tuple(_diffusers_problems(root, index)),
        )
    config = _read_json(root / "config.json")
    has_torchscript = any(root.glob("*.pt")) or any(root.glob("*.pts"))
    architectures = tuple(str(a) for a in (config or {}).get("architectures") or ())
    tasks = transformers_tasks(architectures)
    # A TorchScript repo may carry a config.json of its own: it is transformers only when
    # transformers has a runtime for the architecture.
    if architectures and (tasks or not has_torchscript):
        assert config is not None
        return SnapshotInfo(
            format=TRANSFORMERS,
            class_name=architectures[0],
            architectures=architectures,
            model_type=str(config.get("model_type") or "") or None,
            weight_bytes=weight_bytes,
            weight_dtype=dtype,
            tasks=tasks,
            problems=tuple(_transformers_problems(root, tasks)),
        )
    if has_torchscript:
        return SnapshotInfo(format=TORCHSCRIPT, weight_bytes=weight_bytes, weight_dtype=dtype)
    if (root / "config.pbtxt").is_file() or any(root.glob("*/config.pbtxt")):
        return SnapshotInfo(format=TRITON_REPOSITORY, weight_bytes=weight_bytes, weight_dtype=dtype)
    return SnapshotInfo(format=UNKNOWN, weight_bytes=weight_bytes, weight_dtype=dtype)


def task_for(pipeline: str | None, task: str | None) -> str | None:
    """The task a capability asks for: `serving.task` when set, else its go-livepeer pipeline's."""
    if task:
        return task
    return PIPELINE_TASKS.get(pipeline or "")


def check_serves(info: SnapshotInfo, task: str) -> None:
    """Raise IncompatibleModel naming the class, the task and the fix, unless `info` serves `task`."""
    if info.format not in (DIFFUSERS, TRANSFORMERS):
        raise IncompatibleModel(
            f"task {task} needs a diffusers (model_index.json) or transformers (config.json with "
            f"architectures) snapshot; this one is {info.format}"
        )
    what = f"{info.format} {info.class_name or '(no class name)'}"
    if task not in info.tasks:
        served = ", ".join(info.tasks) or "no task this worker has a runtime for"
        known = DIFFUSERS_TASKS if info.format == DIFFUSERS else TRANSFORMERS_TASKS
        raise IncompatibleModel(
            f"{what} cannot serve {task} (it serves: {served}); pick a model whose class is one of "
            f"{sorted(c for c, t in known.items() if task in t) or 'the supported classes'}, or change "
            "the capability's pipeline/serving.task"
        )
    if info.problems:
        raise IncompatibleModel(f"{what}: " + "; ".join(info.problems))
