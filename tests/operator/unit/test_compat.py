"""Can the cached model serve the capability? The operator's check on the prefetcher's record."""

from __future__ import annotations

from typing import Any

import pytest
from lpbyoc import compat
from lpbyoc.spec import HF_FORMATS, LIVE_TASKS, TASKS, parse_spec
from lpbyoc_worker.runtimes import detect, registry

from .conftest import BYOC_BODY, with_changes

WHISPER = {
    "format": "transformers",
    "className": "WhisperForConditionalGeneration",
    "architectures": ["WhisperForConditionalGeneration"],
    "modelType": "whisper",
    "weightBytes": 151_000_000,
    "weightDtype": "F32",
    "tasks": ["audio-to-text"],
    "problems": [],
    "pipelineTag": "automatic-speech-recognition",
}
SD = {
    "format": "diffusers",
    "className": "StableDiffusionPipeline",
    "weightBytes": 2_000_000_000,
    "weightDtype": "F16",
    "tasks": ["text-to-image", "image-to-image"],
    "problems": [],
}
DEPTH = {**WHISPER, "className": "DepthAnythingForDepthEstimation", "tasks": ["depth-estimation"]}


def spec_with(**changes: Any) -> Any:
    return parse_spec(with_changes(BYOC_BODY, {f"spec.{k}": v for k, v in changes.items()})["spec"])


def test_the_operator_tables_match_the_worker_ones() -> None:
    assert compat.PIPELINE_TASKS == detect.PIPELINE_TASKS
    assert LIVE_TASKS == detect.LIVE_TASKS
    assert set(HF_FORMATS) == {detect.DIFFUSERS, detect.TRANSFORMERS}
    served = {
        t for tasks in (*detect.DIFFUSERS_TASKS.values(), *detect.TRANSFORMERS_TASKS.values()) for t in tasks
    }
    assert served <= set(TASKS)
    assert set(TASKS) == set(registry.TASKS)  # the CRD enum names exactly the tasks with a runtime


def test_whisper_on_image_to_image_is_refused_naming_class_and_task() -> None:
    verdict = compat.judge(spec_with(**{"capability.pipeline": "image-to-image"}), WHISPER)
    assert verdict.problem is not None
    assert verdict.problem.startswith(
        "transformers WhisperForConditionalGeneration cannot serve image-to-image (it serves: audio-to-text)"
    )
    assert verdict.status == {
        "format": "transformers",
        "className": "WhisperForConditionalGeneration",
        "task": "image-to-image",
        "tasks": ["audio-to-text"],
        "weightBytes": 151_000_000,
        "weightDtype": "F32",
    }


def test_pipeline_task_served_is_compatible() -> None:
    verdict = compat.judge(spec_with(**{"capability.pipeline": "image-to-image"}), SD)
    assert (verdict.task, verdict.problem) == ("image-to-image", None)
    assert verdict.status is not None and verdict.status["className"] == "StableDiffusionPipeline"


def test_serving_task_overrides_the_pipeline_and_a_single_task_is_inferred() -> None:
    byoc = spec_with(**{"serving.task": "depth-estimation"})
    assert compat.judge(byoc, DEPTH).problem is None
    inferred = compat.judge(spec_with(), DEPTH)  # byoc without pipeline or serving.task
    assert (inferred.task, inferred.problem) == ("depth-estimation", None)


def test_several_tasks_and_none_asked_needs_serving_task() -> None:
    verdict = compat.judge(spec_with(), SD)
    assert verdict.task is None
    assert verdict.problem is not None and "needs a task" in verdict.problem
    assert "text-to-image, image-to-image" in verdict.problem


def test_live_video_needs_a_frame_task() -> None:
    live = spec_with(**{"capability.pipeline": "live-video-to-video"})
    assert compat.judge(live, DEPTH).problem is None
    whisper = compat.judge(live, WHISPER)
    assert whisper.problem is not None and "live-video-to-video runs frame by frame" in whisper.problem


def test_problems_recorded_by_the_prefetcher_are_refusals() -> None:
    broken = {**DEPTH, "problems": ["the snapshot has no preprocessor_config.json"]}
    verdict = compat.judge(spec_with(**{"serving.task": "depth-estimation"}), broken)
    assert verdict.problem == (
        "transformers DepthAnythingForDepthEstimation: the snapshot has no preprocessor_config.json"
    )


@pytest.mark.parametrize("fmt", ["torchscript", "tritonRepository"])
def test_taskless_formats_skip_the_check(fmt: str) -> None:
    spec = spec_with(**{"capability.pipeline": "image-to-image", "serving.triton": {"modelFormat": fmt}})
    assert compat.judge(spec, WHISPER).problem is None
    detected = {"format": fmt, "tasks": [], "problems": [], "weightBytes": 10}
    assert compat.judge(spec_with(), detected).problem is None


def test_declared_format_must_match_the_snapshot() -> None:
    spec = spec_with(**{"serving.triton": {"modelFormat": "diffusers"}, "serving.task": "image-to-image"})
    problem = compat.judge(spec, WHISPER).problem
    assert (
        problem is not None
        and "modelFormat is diffusers, but the snapshot has no model_index.json" in problem
    )


def test_no_record_no_verdict_and_the_status_record_is_the_fallback() -> None:
    spec = spec_with(**{"capability.pipeline": "image-to-image"})
    assert compat.judge(spec, None) == compat.Verdict("image-to-image", None, None)
    sha = "a" * 40
    previous = {"resolvedRevision": sha, "model": {"format": "transformers", "tasks": ["audio-to-text"]}}
    assert compat.recorded_model({"result": "Succeeded"}, previous, sha) == previous["model"]
    assert compat.recorded_model({"result": "Succeeded"}, previous, "b" * 40) is None
    assert compat.recorded_model({"model": WHISPER}, previous, sha) == WHISPER
