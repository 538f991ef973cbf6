"""Tiny random-weight diffusers snapshots of the real architectures, written with `save_pretrained`.

Each `save_tiny_*` builds the pipeline class that a Hub repository of that kind holds (SD 1.5 /
SD-turbo, SDXL / SDXL-turbo / Lightning, the x4 upscaler, Stable Video Diffusion), with configs
small enough that a build, a reload and a 1-2 step run take well under a second on 2 CPU cores,
and saves it as safetensors the way a prefetched snapshot looks. The geometry is kept where the
pipelines depend on it: 4-block VAEs (scale factor 8) for SD, SDXL and SVD, a 3-block VAE
(factor 4) for the upscaler, the CLIP vision tower of SVD at 224 px (the pipeline resizes to it).

Weights are seeded, so a builder called twice writes the same model. Tokenizers come in both
layouts a snapshot can hold: transformers-5 `tokenizer.json` + `tokenizer_config.json`, or the
older `vocab.json` + `merges.txt` + `special_tokens_map.json` most Hub repositories carry; both
hold the same hand-made byte-level BPE vocabulary, so they tokenize identically.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLPipeline,
    StableVideoDiffusionPipeline,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

TokenizerLayout = Literal["tokenizer.json", "vocab.json"]
# "pass": a checker whose thresholds no image reaches; "flag": one that flags every image.
SafetyChecker = Literal["none", "pass", "flag"]

WEIGHT_SEED = 0
TEXT_HIDDEN = 32
TEXT_MAX_LENGTH = 77  # the pipelines pad prompts to the tokenizer's model_max_length
SAFETY_IMAGE_SIZE = 32
SVD_NUM_FRAMES = 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# A few merges so multi-byte tokens exist; the rest of every word falls back to single bytes.
MERGES = ("a t", "t h", "th e</w>", "c a", "ca t</w>", "o n</w>", "r e", "i n")


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table (what byte-level BPE vocabularies use)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clip_vocab() -> dict[str, int]:
    """Every byte alone and at a word's end, the merged tokens, then CLIP's two special tokens."""
    chars = list(_byte_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in MERGES] + [BOS, EOS]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def write_clip_tokenizer(target: Path, layout: TokenizerLayout = "tokenizer.json") -> None:
    """Write the tiny CLIP tokenizer into `target` in the given layout."""
    target.mkdir(parents=True, exist_ok=True)
    legacy = {
        "vocab.json": json.dumps(clip_vocab()),
        "merges.txt": "#version: 0.2\n" + "\n".join(MERGES) + "\n",
        "special_tokens_map.json": json.dumps(
            {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
        ),
        "tokenizer_config.json": json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": TEXT_MAX_LENGTH,
                "do_lower_case": True,
                "bos_token": BOS,
                "eos_token": EOS,
                "unk_token": EOS,
                "pad_token": EOS,
            }
        ),
    }
    for name, text in legacy.items():
        (target / name).write_text(text)
    if layout == "tokenizer.json":
        tokenizer = CLIPTokenizer.from_pretrained(target)
        for name in legacy:
            (target / name).unlink()
        tokenizer.save_pretrained(target)
        for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            (target / name).unlink(missing_ok=True)  # keep the transformers-5 layout pure


def _tokenizer() -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as scratch:
        write_clip_tokenizer(Path(scratch), "vocab.json")
        return CLIPTokenizer.from_pretrained(scratch)


def _text_config() -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(clip_vocab()),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_MAX_LENGTH,
        projection_dim=TEXT_HIDDEN,
        bos_token_id=clip_vocab()[BOS],
        eos_token_id=clip_vocab()[EOS],
        pad_token_id=clip_vocab()[EOS],
    )


def _seeded(build: Any) -> Any:
    torch.manual_seed(WEIGHT_SEED)
    return build()


def _sd_vae(blocks: int = 4, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """SD's VAE shape with 16/32 channels: `blocks` blocks give a scale factor of 2**(blocks-1)."""
    channels = (16, 16, 32, 32)[:blocks] if blocks == 4 else (16, 32, 32)[:blocks]
    return _seeded(
        lambda: AutoencoderKL(
            block_out_channels=channels,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=scaling_factor,
        )
    )


def _sd_unet(**overrides: Any) -> UNet2DConditionModel:
    config: dict[str, Any] = {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": TEXT_HIDDEN,
        "attention_head_dim": (2, 4),
        "norm_num_groups": 16,
    }
    config.update(overrides)
    return _seeded(lambda: UNet2DConditionModel(**config))


def _sd_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _safety_parts(kind: SafetyChecker) -> tuple[Any, Any]:
    """(safety_checker, feature_extractor): a tiny StableDiffusionSafetyChecker whose concept
    thresholds decide the outcome (cosine similarity is at most 1, so +2 never flags, -2 always)."""
    if kind == "none":
        return None, None
    config = CLIPConfig(
        text_config={"hidden_size": TEXT_HIDDEN, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "vocab_size": 99, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": TEXT_HIDDEN, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": SAFETY_IMAGE_SIZE, "patch_size": 8},
        projection_dim=TEXT_HIDDEN,
    )  # fmt: skip
    checker = _seeded(lambda: StableDiffusionSafetyChecker(config))
    threshold = 2.0 if kind == "pass" else -2.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    extractor = CLIPImageProcessor(
        size={"shortest_edge": SAFETY_IMAGE_SIZE},
        crop_size={"height": SAFETY_IMAGE_SIZE, "width": SAFETY_IMAGE_SIZE},
    )
    return checker, extractor


def _save(pipeline: Any, target: Path, tokenizer_layout: TokenizerLayout, fp16_variant: bool) -> Path:
    """Save as safetensors (the fp16 variant holds real fp16 weights named `*.fp16.safetensors`),
    then rewrite the tokenizer folders in the asked layout (save_pretrained always writes the
    transformers-5 one)."""
    if fp16_variant:
        pipeline.to(torch.float16)
        pipeline.save_pretrained(target, safe_serialization=True, variant="fp16")
    else:
        pipeline.save_pretrained(target, safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2"):
        if (target / name).is_dir():
            shutil.rmtree(target / name)
            write_clip_tokenizer(target / name, tokenizer_layout)
    _name_processors_as_the_hub_does(target)
    return target


def _name_processors_as_the_hub_does(target: Path) -> None:
    """Without torchvision, transformers 5 builds `CLIPImageProcessorPil` and model_index.json
    records that name; Hub snapshots say `CLIPImageProcessor` (loaded here through the same PIL
    fallback), so the snapshot says what a downloaded one says."""
    index_path = target / "model_index.json"
    index = json.loads(index_path.read_text())
    for name, spec in index.items():
        if isinstance(spec, list) and spec[:1] == ["transformers"] and str(spec[1]).endswith("ProcessorPil"):
            index[name] = ["transformers", spec[1].removesuffix("Pil")]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def save_tiny_sd(
    target: Path,
    *,
    tokenizer_layout: TokenizerLayout = "tokenizer.json",
    safety_checker: SafetyChecker = "none",
    fp16_variant: bool = False,
) -> Path:
    """A StableDiffusionPipeline snapshot (the SD 1.5 / SD-turbo layout); returns `target`."""
    checker, extractor = _safety_parts(safety_checker)
    pipeline = StableDiffusionPipeline(
        vae=_sd_vae(),
        text_encoder=_seeded(lambda: CLIPTextModel(_text_config())),
        tokenizer=_tokenizer(),
        unet=_sd_unet(),
        scheduler=_sd_scheduler(),
        safety_checker=checker,
        feature_extractor=extractor,
        requires_safety_checker=checker is not None,
    )
    return _save(pipeline, target, tokenizer_layout, fp16_variant)


def save_tiny_sdxl(
    target: Path, *, tokenizer_layout: TokenizerLayout = "tokenizer.json", fp16_variant: bool = False
) -> Path:
    """A StableDiffusionXLPipeline snapshot (SDXL / SDXL-turbo / Lightning): two text encoders and
    tokenizers, a UNet conditioned on both encoders' hidden states and the pooled text + size ids."""
    time_embed_dim = 8
    unet = _sd_unet(
        cross_attention_dim=2 * TEXT_HIDDEN,  # both encoders' penultimate hidden states, concatenated
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # pooled projection of text_encoder_2 + 6 size/crop ids, each embedded to time_embed_dim
        projection_class_embeddings_input_dim=TEXT_HIDDEN + 6 * time_embed_dim,
    )
    tokenizer = _tokenizer()
    pipeline = StableDiffusionXLPipeline(
        vae=_sd_vae(),
        text_encoder=_seeded(lambda: CLIPTextModel(_text_config())),
        text_encoder_2=_seeded(lambda: CLIPTextModelWithProjection(_text_config())),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )
    return _save(pipeline, target, tokenizer_layout, fp16_variant)


def save_tiny_upscaler(
    target: Path,
    *,
    tokenizer_layout: TokenizerLayout = "tokenizer.json",
    safety_checker: SafetyChecker = "none",
) -> Path:
    """A StableDiffusionUpscalePipeline snapshot (stable-diffusion-x4-upscaler's layout): the UNet
    takes the latents and the noised low-res image (4 + 3 channels) and the noise level as a class
    label; the 3-block VAE decodes latents at the low-res size to 4x that size."""
    checker, extractor = _safety_parts(safety_checker)
    unet = _sd_unet(in_channels=7, num_class_embeds=1000)
    pipeline = StableDiffusionUpscalePipeline(
        vae=_sd_vae(blocks=3, scaling_factor=0.08333),  # the x4 upscaler's
        text_encoder=_seeded(lambda: CLIPTextModel(_text_config())),
        tokenizer=_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        safety_checker=checker,
        feature_extractor=extractor,
        max_noise_level=350,
    )
    return _save(pipeline, target, tokenizer_layout, fp16_variant=False)


def save_tiny_svd(target: Path, *, fp16_variant: bool = False) -> Path:
    """A StableVideoDiffusionPipeline snapshot with a 2-frame UNet (its config's num_frames is
    what the pipeline generates by default)."""
    time_embed_dim = 8
    unet = _seeded(
        lambda: UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=8,
            in_channels=8,  # noisy latents + the conditioning image's latents
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=TEXT_HIDDEN,
            num_attention_heads=(2, 4),
            addition_time_embed_dim=time_embed_dim,
            projection_class_embeddings_input_dim=3 * time_embed_dim,  # fps, motion bucket, noise aug
            num_frames=SVD_NUM_FRAMES,
        )
    )
    vae = _seeded(
        lambda: AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 32, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
        )
    )
    vision = CLIPVisionConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,  # the pipeline resizes the conditioning image to 224x224 itself
        patch_size=32,
        projection_dim=TEXT_HIDDEN,
    )
    pipeline = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=_seeded(lambda: CLIPVisionModelWithProjection(vision)),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            interpolation_type="linear",
            prediction_type="v_prediction",
            sigma_max=700.0,
            sigma_min=0.002,
            steps_offset=1,
            timestep_spacing="leading",
            timestep_type="continuous",
            use_karras_sigmas=True,
        ),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    return _save(pipeline, target, "tokenizer.json", fp16_variant)
