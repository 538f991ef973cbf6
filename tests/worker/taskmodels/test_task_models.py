"""Every runtime end to end: Hub fixture → real prefetcher → `model-repo --task` → real tritonserver.

Tiny random-weight models of the real architectures are built in the test (save_pretrained to
safetensors), published on the Hub-compatible fixture, downloaded by the real prefetcher, turned
into Triton python-backend models and served by one real tritonserver. Each answer through Triton
must equal the same runtime's answer in this process for the same request and seed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from lpbyoc_worker.inference import InvalidInput, TritonInference
from lpbyoc_worker.runtimes.backends import TritonTaskBackend
from lpbyoc_worker.runtimes.base import TaskRequest, TaskResult

from tests.support.task_models import run_model_repo_task
from tests.support.tiny_transformers import random_image

from .task_cases import MODELS, REQUESTS, Served

# The session fixture builds, downloads and loads nine models: minutes on a busy 2-core box.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


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
