"""Default file selection by detected format, from the Hub's file list alone (a pure function).

The file lists are those of real Hub repos (trimmed of nothing that matters to the rules).
"""

from __future__ import annotations

import pytest
from lpbyoc_worker.prefetch.plan import select_default_files

SD_TURBO = [
    ".gitattributes",
    "LICENSE.md",
    "README.md",
    "feature_extractor/preprocessor_config.json",
    "image.png",
    "model_index.json",
    "scheduler/scheduler_config.json",
    "sd_turbo.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
]

# An SDXL (Lightning/turbo-like) layout: two text encoders, sharded fp32 UNet with its index,
# fp16 UNet in one file, .bin duplicates, ONNX and Flax exports, and a top-level checkpoint.
SDXL = [
    "README.md",
    "model_index.json",
    "sdxl_lightning_4step.safetensors",
    "sd_xl_base_1.0.ckpt",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder/flax_model.msgpack",
    "text_encoder_2/config.json",
    "text_encoder_2/model.fp16.safetensors",
    "text_encoder_2/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.safetensors.index.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "unet/openvino_model.xml",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "vae_decoder/model.onnx",
    "vae_decoder/config.json",
    "vae_1_0/diffusion_pytorch_model.fp16.safetensors",
]

DEPTH_ANYTHING = [
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
]

WHISPER = [
    ".gitattributes",
    "README.md",
    "added_tokens.json",
    "config.json",
    "flax_model.msgpack",
    "generation_config.json",
    "merges.txt",
    "model.safetensors",
    "normalizer.json",
    "preprocessor_config.json",
    "pytorch_model.bin",
    "special_tokens_map.json",
    "tf_model.h5",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_args.bin",
    "vocab.json",
]


def test_sd_turbo_with_fp16_takes_the_variant_weights_and_no_checkpoint() -> None:
    selection = select_default_files(SD_TURBO, "fp16")
    assert selection.layout == "diffusers"
    assert list(selection.paths) == [
        "feature_extractor/preprocessor_config.json",
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]


def test_sd_turbo_without_variant_takes_the_full_precision_weights() -> None:
    paths = select_default_files(SD_TURBO).paths
    weights = [p for p in paths if p.endswith(".safetensors")]
    assert weights == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert "sd_turbo.safetensors" not in paths and "image.png" not in paths and "README.md" not in paths


def test_sdxl_layout_skips_bin_onnx_flax_ckpt_and_keeps_shards_with_their_index() -> None:
    paths = set(select_default_files(SDXL).paths)
    assert {
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "text_encoder_2/model.safetensors",
        "tokenizer_2/vocab.json",
    } <= paths
    assert not any(p.endswith((".bin", ".ckpt", ".onnx", ".msgpack", ".xml")) for p in paths), paths
    assert "sdxl_lightning_4step.safetensors" not in paths
    assert not any(".fp16." in p for p in paths if not p.startswith("vae_1_0/"))
    # A component with only variant files falls back to them.
    assert "vae_1_0/diffusion_pytorch_model.fp16.safetensors" in paths


def test_sdxl_with_variant_takes_the_fp16_unet_not_the_fp32_shards() -> None:
    paths = set(select_default_files(SDXL, "fp16").paths)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in paths
    assert not any(p.startswith("unet/diffusion_pytorch_model-0000") for p in paths)
    assert "unet/diffusion_pytorch_model.safetensors.index.json" not in paths
    assert "text_encoder/model.safetensors" not in paths


def test_sharded_variant_keeps_its_own_index() -> None:
    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    assert list(select_default_files(files, "fp16").paths) == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]


def test_a_component_with_only_bin_weights_takes_them() -> None:
    files = ["model_index.json", "safety_checker/config.json", "safety_checker/pytorch_model.bin"]
    assert "safety_checker/pytorch_model.bin" in select_default_files(files).paths


def test_depth_anything_is_transformers_and_takes_everything_it_loads() -> None:
    selection = select_default_files(DEPTH_ANYTHING)
    assert selection.layout == "transformers"
    assert list(selection.paths) == ["config.json", "model.safetensors", "preprocessor_config.json"]


def test_whisper_takes_safetensors_and_tokenizer_files_not_pt_tf_flax_duplicates() -> None:
    selection = select_default_files(WHISPER)
    assert selection.layout == "transformers"
    assert list(selection.paths) == [
        "added_tokens.json",
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.safetensors",
        "normalizer.json",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]


def test_transformers_without_safetensors_takes_the_pytorch_weights_only() -> None:
    files = ["config.json", "pytorch_model.bin", "training_args.bin", "tf_model.h5", "vocab.txt"]
    assert list(select_default_files(files).paths) == ["config.json", "pytorch_model.bin", "vocab.txt"]


@pytest.mark.parametrize(
    "files",
    [
        # A TorchScript repo that also ships a config.json: no HF weights at the top, so every file.
        ["config.json", "model.pt", "README.md", "shards/shard-00000-of-00001.bin"],
        # A Triton model repository.
        ["model/config.pbtxt", "model/1/model.plan"],
        ["weights.bin", "notes.txt"],
    ],
)
def test_other_layouts_keep_every_file(files: list[str]) -> None:
    selection = select_default_files(files)
    assert selection.layout == "all" and sorted(selection.paths) == sorted(files)
