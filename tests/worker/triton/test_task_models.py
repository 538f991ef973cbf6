"""Every runtime end to end: Hub fixture → real prefetcher → `model-repo --task` → real tritonserver.

Tiny random-weight models of the real architectures are built in the test (save_pretrained to
safetensors), published on the Hub-compatible fixture, downloaded by the real prefetcher, turned
into Triton python-backend models and served by one real tritonserver. Each answer through Triton
must equal the same runtime's answer in this process for the same request and seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from lpbyoc_worker.inference import InvalidInput, TritonInference
from lpbyoc_worker.runtimes.backends import LocalTaskBackend, TritonTaskBackend
from lpbyoc_worker.runtimes.base import Device, TaskRequest, TaskResult

from tests.support import tiny_diffusers, tiny_transformers
from tests.support.hub_server import serve_hub
from tests.support.task_models import publish_and_prefetch, run_model_repo_task, running_task_triton
from tests.support.tiny_transformers import random_image, tone

pytestmark = pytest.mark.slow

# Model name in Triton → (Hub repo, task). One snapshot may back several tasks (SD: both).
MODELS = {
    "text2img": ("tiny/sd", "text-to-image"),
    "img2img": ("tiny/sd", "image-to-image"),
    "upscale": ("tiny/upscaler", "upscale"),
    "img2video": ("tiny/svd", "image-to-video"),
    "depth": ("tiny/depth-anything", "depth-estimation"),
    "segment": ("tiny/segformer", "image-segmentation"),
    "sam2": ("tiny/sam2", "segment-anything-2"),
    "caption": ("tiny/blip", "image-to-text"),
    "asr": ("tiny/whisper", "audio-to-text"),
}
BUILDERS = {
    "tiny/sd": tiny_diffusers.save_tiny_sd,
    "tiny/upscaler": tiny_diffusers.save_tiny_upscaler,
    "tiny/svd": tiny_diffusers.save_tiny_svd,
    "tiny/depth-anything": tiny_transformers.build_depth_anything,
    "tiny/segformer": tiny_transformers.build_segformer,
    "tiny/sam2": tiny_transformers.build_sam2,
    "tiny/blip": tiny_transformers.build_blip,
    "tiny/whisper": tiny_transformers.build_whisper,
}
REQUESTS = {
    "text2img": TaskRequest(
        params={
            "prompt": "a red fox",
            "num_inference_steps": 2,
            "height": 32,
            "width": 32,
            "seed": 11,
            "num_images_per_prompt": 2,
        },
    ),
    "img2img": TaskRequest(
        params={"prompt": "watercolour", "strength": 0.6, "num_inference_steps": 2, "seed": 5},
        image=random_image(32, 32, seed=1),
    ),
    "upscale": TaskRequest(
        params={"prompt": "sharp", "num_inference_steps": 2, "seed": 3}, image=random_image(16, 16, seed=2)
    ),
    "img2video": TaskRequest(
        params={"height": 32, "width": 32, "num_inference_steps": 2, "seed": 9, "fps": 6},
        image=random_image(32, 32, seed=3),
    ),
    "depth": TaskRequest(image=random_image(40, 48, seed=4)),
    "segment": TaskRequest(image=random_image(40, 48, seed=5)),
    "sam2": TaskRequest(
        params={"point_coords": [[10, 12]], "point_labels": [1], "multimask_output": True},
        image=random_image(48, 40, seed=6),
    ),
    "caption": TaskRequest(image=random_image(32, 32, seed=7)),
    "asr": TaskRequest(params={"return_timestamps": True}, audio=tone(1.0)),
}


@dataclass
class Served:
    grpc_url: str
    snapshots: dict[str, Path]
    local: dict[str, LocalTaskBackend]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("task-models")
    snapshots: dict[str, Path] = {}
    with serve_hub() as hub:
        for repo, build in BUILDERS.items():
            source = build(work / "build" / repo.replace("/", "--"))
            snapshots[repo], result = publish_and_prefetch(hub, source, repo, work / "cache")
            assert result["result"] == "Succeeded", result
    models = {name: (snapshots[repo], task) for name, (repo, task) in MODELS.items()}
    local = {
        name: LocalTaskBackend.load(task, snapshots[repo], Device("cpu"))
        for name, (repo, task) in MODELS.items()
    }
    with running_task_triton(work, models) as server:
        yield Served(grpc_url=server.grpc_url, snapshots=snapshots, local=local)


def same_json(got: object, expected: object, rel: float) -> bool:
    """Equal JSON, floats within `rel` (the two processes may use different CPU thread counts)."""
    if isinstance(expected, float) and isinstance(got, float):
        return got == pytest.approx(expected, rel=rel, abs=1e-12)
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(same_json(got[k], expected[k], rel) for k in expected)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(
            same_json(g, e, rel) for g, e in zip(got, expected, strict=True)
        )
    return got == expected


def assert_same(through_triton: TaskResult, in_process: TaskResult, *, rel: float) -> None:
    """Same data and tensors; float tensors within `rel` of their largest magnitude."""
    assert same_json(through_triton.data, in_process.data, rel), (through_triton.data, in_process.data)
    assert set(through_triton.tensors) == set(in_process.tensors)
    for name, expected in in_process.tensors.items():
        got = through_triton.tensors[name]
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        if np.issubdtype(expected.dtype, np.floating):
            scale = float(np.abs(expected).max(initial=0.0)) or 1.0
            np.testing.assert_allclose(got, expected, atol=rel * scale, rtol=0, err_msg=name)
        else:
            # uint8 images and int labels: exact, or off by one where float rounding differs
            diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
            assert int(diff.max(initial=0)) <= (1 if expected.dtype == np.uint8 else 0), name


@pytest.mark.parametrize("model", list(MODELS))
async def test_triton_answers_as_the_runtime_in_process(served: Served, model: str) -> None:
    request = REQUESTS[model]
    backend = TritonTaskBackend(TritonInference(served.grpc_url, model, timeout_s=120), MODELS[model][1])
    try:
        assert await backend.is_model_ready()
        through_triton = await backend.run(request)
    finally:
        await backend.close()
    in_process = await served.local[model].run(request)
    assert_same(through_triton, in_process, rel=1e-4)
    assert through_triton.tensors or through_triton.data.get("text") is not None


async def test_same_seed_same_images_other_seed_other_images(served: Served) -> None:
    backend = TritonTaskBackend(TritonInference(served.grpc_url, "img2img", timeout_s=120), "image-to-image")
    try:
        base = REQUESTS["img2img"]
        first = await backend.run(base)
        again = await backend.run(base)
        other = await backend.run(TaskRequest(params={**base.params, "seed": 6}, image=base.image))
    finally:
        await backend.close()
    assert np.array_equal(first.tensors["IMAGES"], again.tensors["IMAGES"])
    assert not np.array_equal(first.tensors["IMAGES"], other.tensors["IMAGES"])
    assert first.data["seeds"] == [5] and other.data["seeds"] == [6]


async def test_concurrent_depth_requests_are_batched_and_each_answer_is_its_own(served: Served) -> None:
    """Same-shaped requests may run as one batch (dynamic batching); each still gets its own map."""
    requests = [TaskRequest(image=random_image(40, 48, seed=seed)) for seed in range(4)]
    backend = TritonTaskBackend(TritonInference(served.grpc_url, "depth", timeout_s=120), "depth-estimation")
    try:
        answers = await asyncio.gather(*(backend.run(r) for r in requests))
    finally:
        await backend.close()
    for request, answer in zip(requests, answers, strict=True):
        expected = await served.local["depth"].run(request)
        assert_same(answer, expected, rel=1e-4)


async def test_a_bad_parameter_is_an_invalid_input_naming_it(served: Served) -> None:
    backend = TritonTaskBackend(TritonInference(served.grpc_url, "img2img", timeout_s=120), "image-to-image")
    try:
        with pytest.raises(InvalidInput, match="strength"):
            await backend.run(
                TaskRequest(params={"prompt": "x", "strength": 7, "seed": 1}, image=random_image(32, 32))
            )
    finally:
        await backend.close()


def test_model_repo_refuses_a_model_that_cannot_serve_the_task(served: Served, tmp_path: Path) -> None:
    done = run_model_repo_task(
        served.snapshots["tiny/whisper"], tmp_path / "models", "model", "image-to-image"
    )
    assert done.returncode == 2
    assert "WhisperForConditionalGeneration cannot serve image-to-image" in done.stderr
    assert "audio-to-text" in done.stderr
    assert not (tmp_path / "models" / "model").exists()


def test_model_repo_needs_a_task_for_a_hugging_face_snapshot(served: Served, tmp_path: Path) -> None:
    done = run_model_repo_task(served.snapshots["tiny/sd"], tmp_path / "models", "model", None)
    assert done.returncode == 2
    assert "StableDiffusionPipeline needs a task" in done.stderr and "serving.task" in done.stderr
