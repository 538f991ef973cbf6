"""Random-weight models of the real architectures, built on the spot (no Hub needed).

Used by `lpbyoc-worker demo`, the benchmarks and the GPU benchmark: the weights are random, but
the files are what the Hub holds (diffusers / transformers `save_pretrained` to safetensors) and
compute scales with the config, so the real loading and serving code runs at a realistic cost.

Profiles: "tiny" (seconds on a CPU, for demos), "bench" (SD-style at 512² on a CPU), and the real
configs "sd-turbo" and "depth-anything-v2-small" (for a GPU).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from lpbyoc_worker.weights import ManifestEntry, Marker, sha256_file, snapshot_dir, write_marker

SD_PROFILES = ("tiny", "bench", "sd-turbo")
SEPIA = ((0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131))
DEPTH_PROFILES = ("tiny", "depth-anything-v2-small")


def _bytes_to_unicode() -> dict[int, str]:
    # The byte → printable character table byte-level BPE tokenizers (CLIP, GPT-2) use.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def write_clip_tokenizer(directory: Path) -> int:
    """A byte-level CLIP tokenizer (vocab.json + merges.txt, the Hub's layout); returns its size.

    Every byte is a token, with and without CLIP's end-of-word marker: any prompt tokenizes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {token: index for index, token in enumerate([*symbols, *(s + "</w>" for s in symbols)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "special_tokens_map.json").write_text(
        json.dumps(
            {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
        )
    )
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True})
    )
    return len(vocab)


def _sd_sizes(profile: str) -> dict[str, object]:
    if profile == "tiny":
        return {
            "unet": {"block_out_channels": (32, 64), "layers_per_block": 1, "attention_head_dim": 8},
            "cross": 32,
            "text": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
            },
            "vae": (32, 64),
        }
    if profile == "bench":
        return {
            "unet": {"block_out_channels": (64, 128, 256), "layers_per_block": 1, "attention_head_dim": 8},
            "cross": 256,
            "text": {
                "hidden_size": 256,
                "intermediate_size": 1024,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
            },
            "vae": (64, 128, 128, 128),
        }
    if profile == "sd-turbo":  # stabilityai/sd-turbo (SD 2.1 architecture, OpenCLIP ViT-H text encoder)
        return {
            "unet": {
                "block_out_channels": (320, 640, 1280, 1280),
                "layers_per_block": 2,
                "attention_head_dim": (5, 10, 20, 20),
                "use_linear_projection": True,
            },
            "cross": 1024,
            "text": {
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 23,
                "num_attention_heads": 16,
            },
            "vae": (128, 256, 512, 512),
        }
    raise ValueError(f"unknown SD profile {profile!r}; one of {SD_PROFILES}")


def build_sd_pipeline(directory: Path, profile: str = "tiny", *, seed: int = 0) -> Path:
    """A StableDiffusionPipeline snapshot (model_index.json layout) with random weights."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sizes = _sd_sizes(profile)
    torch.manual_seed(seed)
    unet_sizes = dict(sizes["unet"])  # type: ignore[call-overload]
    levels = len(unet_sizes["block_out_channels"])
    unet = UNet2DConditionModel(
        sample_size=64 if profile == "sd-turbo" else 32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        cross_attention_dim=sizes["cross"],
        norm_num_groups=32,
        **unet_sizes,
    )
    vae_channels = sizes["vae"]
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),  # type: ignore[arg-type]
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),  # type: ignore[arg-type]
        block_out_channels=vae_channels,
        layers_per_block=2 if profile == "sd-turbo" else 1,
        latent_channels=4,
        norm_num_groups=32,
    )
    tokenizer_dir = directory / "_tokenizer"
    vocab_size = write_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=max(vocab_size, 49408 if profile == "sd-turbo" else vocab_size),
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
            hidden_act="gelu",
            projection_dim=min(512, int(sizes["text"]["hidden_size"])),  # type: ignore[index]
            **sizes["text"],  # type: ignore[arg-type]
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)
    for leftover in tokenizer_dir.iterdir():
        leftover.unlink()
    tokenizer_dir.rmdir()
    return directory


def build_depth_anything(directory: Path, profile: str = "tiny", *, seed: int = 0) -> Path:
    """A DepthAnythingForDepthEstimation snapshot (config.json + preprocessor_config.json)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    if profile == "tiny":
        backbone = Dinov2Config(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
        )  # fmt: skip
        head = {"neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16, "head_hidden_size": 8}
        size = 56
    elif profile == "depth-anything-v2-small":  # depth-anything/Depth-Anything-V2-Small-hf
        backbone = Dinov2Config(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
            patch_size=14, image_size=518, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
        )  # fmt: skip
        head = {"neck_hidden_sizes": [48, 96, 192, 384], "fusion_hidden_size": 64, "head_hidden_size": 32}
        size = 518
    else:
        raise ValueError(f"unknown depth profile {profile!r}; one of {DEPTH_PROFILES}")
    torch.manual_seed(seed)
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=backbone.hidden_size,
        patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5],
        depth_estimation_type="relative",
        **head,
    )
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(directory, safe_serialization=True)
    DPTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,  # bicubic, as the published processor
        do_pad=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(directory)
    return directory


def as_cached_snapshot(cache_dir: Path, source: Path, repo: str, sha: str) -> Path:
    """Move a built model into the cache layout with its completion marker, as the prefetch leaves it."""
    target = snapshot_dir(cache_dir, repo, sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    entries = tuple(
        ManifestEntry(path=str(p.relative_to(target)), size=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(target.rglob("*"))
        if p.is_file()
    )
    completed_at = datetime.datetime.now(datetime.UTC).isoformat()
    write_marker(
        cache_dir, Marker(repo=repo, revision="main", sha=sha, files=entries, completed_at=completed_at)
    )
    return target


def build_sepia_torchscript(directory: Path) -> Path:
    """A TorchScript image filter (a sepia colour matrix then a 3x3 blur): `model.pt` in `directory`."""
    import torch

    class SepiaBlur(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.colour = torch.nn.Conv2d(3, 3, kernel_size=1, bias=False)
            self.blur = torch.nn.Conv2d(3, 3, kernel_size=3, padding=1, groups=3, bias=False)
            with torch.no_grad():
                self.colour.weight.copy_(torch.tensor(SEPIA).view(3, 3, 1, 1))
                self.blur.weight.fill_(1.0 / 9.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(self.blur(self.colour(x)), 0.0, 1.0)

    directory.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(SepiaBlur().eval()), str(directory / "model.pt"))
    return directory
