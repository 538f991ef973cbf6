"""Snapshot detection from files alone: format, class, tasks, weight bytes/dtype and named problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lpbyoc_worker.runtimes import detect
from lpbyoc_worker.runtimes.base import IncompatibleModel
from safetensors.numpy import save_file


def write(root: Path, files: dict[str, object]) -> Path:
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            save_file({"weight": content}, str(path))
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


SD_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
}


def sd_files(dtype: type = np.float16) -> dict[str, object]:
    return {
        "model_index.json": SD_INDEX,
        "scheduler/scheduler_config.json": {},
        "text_encoder/config.json": {},
        "text_encoder/model.safetensors": np.zeros(16, dtype),
        "tokenizer/vocab.json": {},
        "tokenizer/merges.txt": "#version: 0.2\n",
        "unet/config.json": {},
        "unet/diffusion_pytorch_model.safetensors": np.zeros(64, dtype),
        "vae/config.json": {},
        "vae/diffusion_pytorch_model.safetensors": np.zeros(32, dtype),
    }


def test_diffusers_snapshot_is_classified_with_its_tasks_and_weights(tmp_path: Path) -> None:
    info = detect.inspect_snapshot(write(tmp_path, sd_files()))
    assert info.format == detect.DIFFUSERS
    assert info.class_name == "StableDiffusionPipeline"
    assert info.tasks == ("text-to-image", "image-to-image")
    assert info.weight_dtype == "F16"
    assert info.weight_bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.safetensors"))
    assert info.problems == ()
    detect.check_serves(info, "image-to-image")
    assert info.to_json()["className"] == "StableDiffusionPipeline"


def test_missing_component_and_tokenizer_files_are_named(tmp_path: Path) -> None:
    files = sd_files()
    del files["tokenizer/vocab.json"], files["tokenizer/merges.txt"]
    files["tokenizer/special_tokens_map.json"] = {}
    del files["vae/config.json"], files["vae/diffusion_pytorch_model.safetensors"]
    info = detect.inspect_snapshot(write(tmp_path, files))
    assert any("no vae/ directory" in p for p in info.problems)
    assert any("tokenizer/ has no tokenizer files" in p for p in info.problems)
    with pytest.raises(IncompatibleModel, match="vae"):
        detect.check_serves(info, "text-to-image")


def test_a_transformers_model_on_the_wrong_task_names_class_task_and_fix(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "config.json": {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper"},
            "model.safetensors": np.zeros(8, np.float32),
            "preprocessor_config.json": {},
            "tokenizer.json": {},
        },
    )
    info = detect.inspect_snapshot(root)
    assert (info.format, info.model_type, info.tasks) == (detect.TRANSFORMERS, "whisper", ("audio-to-text",))
    assert info.weight_dtype == "F32"
    with pytest.raises(IncompatibleModel) as caught:
        detect.check_serves(info, "image-to-image")
    message = str(caught.value)
    assert "WhisperForConditionalGeneration" in message and "image-to-image" in message
    assert "audio-to-text" in message  # what it does serve


@pytest.mark.parametrize(
    ("architecture", "task"),
    [
        ("DepthAnythingForDepthEstimation", "depth-estimation"),
        ("DPTForDepthEstimation", "depth-estimation"),
        ("SegformerForSemanticSegmentation", "image-segmentation"),
        ("UperNetForSemanticSegmentation", "image-segmentation"),
        ("Sam2Model", "segment-anything-2"),
        ("BlipForConditionalGeneration", "image-to-text"),
    ],
)
def test_transformers_architectures_map_to_tasks(tmp_path: Path, architecture: str, task: str) -> None:
    info = detect.inspect_snapshot(
        write(tmp_path, {"config.json": {"architectures": [architecture]}, "preprocessor_config.json": {}})
    )
    assert info.tasks == (task,)


def test_vision_model_without_preprocessor_config_is_a_named_problem(tmp_path: Path) -> None:
    info = detect.inspect_snapshot(
        write(tmp_path, {"config.json": {"architectures": ["DepthAnythingForDepthEstimation"]}})
    )
    assert info.problems and "preprocessor_config.json" in info.problems[0]


def test_a_text_generation_model_serves_nothing(tmp_path: Path) -> None:
    info = detect.inspect_snapshot(write(tmp_path, {"config.json": {"architectures": ["LlamaForCausalLM"]}}))
    assert info.format == detect.TRANSFORMERS and info.tasks == ()
    with pytest.raises(IncompatibleModel, match="LlamaForCausalLM cannot serve image-to-image"):
        detect.check_serves(info, "image-to-image")


def test_other_formats_and_task_choice(tmp_path: Path) -> None:
    (tmp_path / "ts").mkdir()
    (tmp_path / "ts" / "model.pt").write_bytes(b"x")
    assert detect.inspect_snapshot(tmp_path / "ts").format == detect.TORCHSCRIPT
    (tmp_path / "trt" / "m").mkdir(parents=True)
    (tmp_path / "trt" / "m" / "config.pbtxt").write_text("")
    assert detect.inspect_snapshot(tmp_path / "trt").format == detect.TRITON_REPOSITORY
    (tmp_path / "empty").mkdir()
    assert detect.inspect_snapshot(tmp_path / "empty").format == detect.UNKNOWN
    with pytest.raises(IncompatibleModel, match="needs a diffusers"):
        detect.check_serves(detect.inspect_snapshot(tmp_path / "ts"), "depth-estimation")
    assert detect.task_for("image-to-image", None) == "image-to-image"
    assert detect.task_for("live-video-to-video", "depth-estimation") == "depth-estimation"
    assert detect.task_for("live-video-to-video", None) is None


def test_a_torchscript_repo_with_its_own_config_json_stays_torchscript(tmp_path: Path) -> None:
    root = write(tmp_path, {"config.json": {"architectures": ["TinyConvNet"]}})
    (root / "model.pt").write_bytes(b"x")
    assert detect.inspect_snapshot(root).format == detect.TORCHSCRIPT
    (root / "model.pt").unlink()
    assert detect.inspect_snapshot(root).format == detect.TRANSFORMERS  # no runtime: refused by check_serves
