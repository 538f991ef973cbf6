"""Can the cached model serve the capability? Decided from what the prefetcher recorded, before any
worker pod asks for a GPU (docs/architecture.md, "The operator knows what it is serving").

The prefetch result's `model` block is the worker's snapshot detection
(`lpbyoc_worker.runtimes.detect.SnapshotInfo.to_json()`: format, className, tasks, problems, ...).
The operator does not import the worker package: it repeats only the membership check that
`detect.check_serves` and `model-repo` make (the task is one the model serves, no problems), so a
model the worker would refuse is refused here first, with a message naming the class and the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lpbyoc.spec import HF_FORMATS, LIVE_TASKS, LivepeerCapabilitySpec

# go-livepeer pipelines whose task is the pipeline's own name (runtimes/detect.py PIPELINE_TASKS);
# live-video-to-video (and byoc without a pipeline) take serving.task.
PIPELINE_TASKS: dict[str, str] = {
    "text-to-image": "text-to-image",
    "image-to-image": "image-to-image",
    "upscale": "upscale",
    "image-to-video": "image-to-video",
    "image-to-text": "image-to-text",
    "audio-to-text": "audio-to-text",
    "segment-anything-2": "segment-anything-2",
}
LIVE_PIPELINE = "live-video-to-video"
# Formats served without a task (the check is skipped, as before diffusers/transformers existed).
TASKLESS_FORMATS = ("torchscript", "tritonRepository")
STATUS_KEYS = ("format", "className", "weightBytes", "weightDtype")


def task_for(pipeline: str | None, task: str | None) -> str | None:
    """The task a capability asks for: `serving.task` when set, else its pipeline's."""
    if task:
        return task
    return PIPELINE_TASKS.get(pipeline or "")


def spec_task(spec: LivepeerCapabilitySpec) -> str | None:
    return task_for(spec.capability.pipeline, spec.serving.task)


@dataclass(frozen=True)
class Verdict:
    task: str | None  # what the worker serves: asked for, or the model's only task
    problem: str | None  # why the model cannot serve the capability; None when it can (or unknown)
    status: dict[str, Any] | None  # `.status.model`; None while nothing is recorded


def recorded_model(
    result: Mapping[str, Any] | None, previous_status: Mapping[str, Any], revision: str | None
) -> Mapping[str, Any] | None:
    """The prefetch result's model block; else what status recorded for the same commit (the
    prefetch pod, and its termination message with it, may have been garbage-collected)."""
    model = (result or {}).get("model")
    if isinstance(model, Mapping):
        return model
    previous = previous_status.get("model")
    if revision and previous_status.get("resolvedRevision") == revision and isinstance(previous, Mapping):
        return previous
    return None


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def judge(spec: LivepeerCapabilitySpec, model: Mapping[str, Any] | None) -> Verdict:
    wanted = spec_task(spec)
    if model is None:
        return Verdict(task=wanted, problem=None, status=None)
    fmt = str(model.get("format") or "unknown")
    class_name = model.get("className") or None
    tasks = _strings(model.get("tasks"))
    problems = _strings(model.get("problems"))
    declared = spec.serving.triton.model_format
    task = wanted
    problem: str | None = None
    what = f"{fmt} {class_name or '(no class name)'}"
    served = ", ".join(tasks) or "no task this worker has a runtime for"
    if declared in HF_FORMATS and fmt != declared:
        expected = "model_index.json" if declared == "diffusers" else "config.json with architectures"
        problem = (
            f"serving.triton.modelFormat is {declared}, but the snapshot has no {expected} (detected: "
            f"{what if fmt in HF_FORMATS else fmt}); set modelFormat auto or fix model.allowPatterns"
        )
    elif declared not in TASKLESS_FORMATS and fmt in HF_FORMATS:
        if task is None and len(tasks) == 1:
            task = tasks[0]
        if task is None:
            problem = (
                f"{what} needs a task (it serves: {served}): set the capability's pipeline or serving.task"
            )
        elif task not in tasks:
            problem = (
                f"{what} cannot serve {task} (it serves: {served}); pick a model that serves {task}, "
                "or change the capability's pipeline/serving.task"
            )
        elif spec.capability.pipeline == LIVE_PIPELINE and task not in LIVE_TASKS:
            problem = (
                f"{what} serves {task}, but live-video-to-video runs frame by frame: it needs one of "
                f"{', '.join(LIVE_TASKS)} (serving.task)"
            )
        elif problems:
            problem = f"{what}: " + "; ".join(problems)
    status: dict[str, Any] = {k: model[k] for k in STATUS_KEYS if model.get(k) is not None}
    status["format"] = fmt
    if task:
        status["task"] = task
    status["tasks"] = tasks
    return Verdict(task=task, problem=problem, status=status)
