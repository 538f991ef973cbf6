"""Tiny random-weight transformers snapshots of the real architectures, built offline in well under a second.

Each builder writes a directory the way a Hub repository holds it (`config.json`, `model.safetensors`
and the processor/tokenizer files) so runtimes, detection and the Triton path load it exactly like a
downloaded model. Two file layouts exist in the wild and both must load:

- `TRANSFORMERS5`: what transformers 5's `save_pretrained` writes: `processor_config.json` (the image
  processor / feature extractor nested under its key) and `tokenizer.json` + `tokenizer_config.json`.
- `HUB`: what most Hub repositories still hold: a flat `preprocessor_config.json` and the slow-tokenizer
  files (`vocab.json` + `merges.txt` or `vocab.txt`, `special_tokens_map.json`, `tokenizer_config.json`),
  no `tokenizer.json` (the loader converts).

Weights are seeded, so two builds with the same seed hold the same model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRANSFORMERS5 = "transformers5"
HUB = "hub"
LAYOUTS = (TRANSFORMERS5, HUB)

SAMPLING_RATE = 16000
SAM2_IMAGE_SIZE = 64
SEGFORMER_LABELS = ("background", "road", "car")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_image_processor(
    root: Path, config: dict[str, Any], layout: str, processor_class: str | None = None
) -> None:
    """Write an image processor's dict in `layout` (flat preprocessor_config.json, or nested processor_config.json)."""
    _check_layout(layout)
    if layout == HUB:
        _write_json(root / "preprocessor_config.json", config)
    else:
        nested: dict[str, Any] = {"image_processor": config}
        if processor_class:
            nested["processor_class"] = processor_class
        _write_json(root / "processor_config.json", nested)


def _save_image_processor(root: Path, processor: Any, layout: str) -> None:
    write_image_processor(root, processor.to_dict(), layout)


def _write_slow_vocabulary(root: Path, tokenizer: Any) -> None:
    """The vocabulary files a slow tokenizer reads: vocab.txt (WordPiece) or vocab.json + merges.txt (BPE)."""
    if type(tokenizer.backend_tokenizer.model).__name__ == "WordPiece":
        vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
        (root / "vocab.txt").write_text("".join(t + "\n" for t in sorted(vocab, key=vocab.__getitem__)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        for written in tokenizer.save_vocabulary(scratch):
            if written and Path(written).is_file():
                shutil.copy(written, root / Path(written).name)


def _to_hub_layout(root: Path, processor: Any, kind: str) -> None:
    """Rewrite a transformers-5 processor save as the older Hub layout (flat preprocessor, slow-tokenizer files)."""
    nested = json.loads((root / "processor_config.json").read_text())
    flat = dict(nested[kind])
    flat["processor_class"] = nested.get("processor_class", type(processor).__name__)
    _write_json(root / "preprocessor_config.json", flat)
    (root / "processor_config.json").unlink()
    tokenizer = processor.tokenizer
    _write_slow_vocabulary(root, tokenizer)
    (root / "tokenizer.json").unlink()
    special = {
        name: str(getattr(tokenizer, name))
        for name in (
            "bos_token",
            "eos_token",
            "unk_token",
            "pad_token",
            "sep_token",
            "cls_token",
            "mask_token",
        )
        if getattr(tokenizer, name, None) is not None
    }
    added = {str(tok): idx for idx, tok in tokenizer.added_tokens_decoder.items()}
    extra = [tok for tok in added if tok not in special.values()]
    special_map: dict[str, Any] = dict(special)
    if extra:
        special_map["additional_special_tokens"] = [
            tok for tok in extra if tokenizer.added_tokens_decoder[added[tok]].special
        ]
    _write_json(root / "special_tokens_map.json", special_map)
    if added and kind == "feature_extractor":
        _write_json(root / "added_tokens.json", added)


# --- depth estimation -------------------------------------------------------------------------------


def build_depth_anything(root: Path, *, layout: str = HUB, seed: int = 0) -> Path:
    """Depth Anything (DepthAnythingForDepthEstimation on a 4-layer Dinov2 backbone) with a DPT processor.

    The processor keeps the aspect ratio at a multiple of the 14-px patch (as the real checkpoints do),
    so images of one shape give pixel values of one shape.
    """
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
    )

    _check_layout(layout)
    _seeded(seed)
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=28,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
    )
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(root)
    processor = DPTImageProcessorPil(
        size={"height": 28, "width": 28},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_pad=False,
        resample=3,
    )
    _save_image_processor(root, processor, layout)
    return root


# --- semantic segmentation --------------------------------------------------------------------------


def build_segformer(
    root: Path, *, layout: str = HUB, labels: Sequence[str] = SEGFORMER_LABELS, seed: int = 0
) -> Path:
    """SegFormer (SegformerForSemanticSegmentation, 2 encoder blocks) with named labels and its processor."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessorPil

    _check_layout(layout)
    _seeded(seed)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    SegformerForSemanticSegmentation(config).eval().save_pretrained(root)
    _save_image_processor(root, SegformerImageProcessorPil(size={"height": 32, "width": 32}), layout)
    return root


# --- SAM2 -------------------------------------------------------------------------------------------

# What facebook/sam2.1-hiera-* hold in preprocessor_config.json, at the tiny model's input size.
SAM2_PROCESSOR = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "Sam2ImageProcessorFast",
    "mask_size": {"height": SAM2_IMAGE_SIZE // 4, "width": SAM2_IMAGE_SIZE // 4},
    "resample": 2,
    "rescale_factor": 1 / 255,
    "size": {"height": SAM2_IMAGE_SIZE, "width": SAM2_IMAGE_SIZE},
}


def build_sam2(root: Path, *, layout: str = HUB, seed: int = 0) -> Path:
    """SAM2 (Sam2Model: a 5-block Hiera image encoder, prompt encoder, 1-layer mask decoder) at 64 px input.

    The processor file is written by hand: `Sam2ImageProcessor` needs torchvision, which this
    environment must not have. A global-attention block must not open a stage (Hiera divides by zero).
    """
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    _check_layout(layout)
    _seeded(seed)
    hiera = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=SAM2_IMAGE_SIZE,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 2, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    size = SAM2_IMAGE_SIZE // 4
    vision = Sam2VisionConfig(
        backbone_config=hiera,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[size, size], [size // 2, size // 2], [size // 4, size // 4]],
        fpn_hidden_size=16,
    )
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=16, image_size=SAM2_IMAGE_SIZE, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=16
        ),
    )
    Sam2Model(config).eval().save_pretrained(root)
    write_image_processor(root, dict(SAM2_PROCESSOR), layout, processor_class="Sam2Processor")
    return root


# --- BLIP captioning --------------------------------------------------------------------------------

BLIP_WORDS = ("a", "photo", "picture", "of", "cat", "dog", "the", "on", "red", "blue", "sofa", "##s")


def build_blip(root: Path, *, layout: str = HUB, seed: int = 0) -> Path:
    """BLIP captioning (BlipForConditionalGeneration: 2-layer ViT, 2-layer BERT decoder) with a WordPiece vocab.

    Token ids follow the real checkpoints' roles: [DEC] starts generation, [SEP] ends it, [PAD] pads.
    """
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    _check_layout(layout)
    _seeded(seed)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *BLIP_WORDS]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 16,
        "encoder_hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "bos_token_id": vocab["[DEC]"],
        "pad_token_id": vocab["[PAD]"],
        "sep_token_id": vocab["[SEP]"],
        "eos_token_id": vocab["[SEP]"],
    }
    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    BlipForConditionalGeneration(config).eval().save_pretrained(root)
    processor.save_pretrained(root)
    if layout == HUB:
        _to_hub_layout(root, processor, "image_processor")
    return root


# --- Whisper speech recognition ---------------------------------------------------------------------

WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
WHISPER_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> every 20 ms, as the real vocabularies hold


def _byte_level_alphabet() -> list[str]:
    """GPT-2's byte → printable-character table: a byte-level BPE base vocabulary that encodes any text."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _whisper_tokenizer() -> Any:
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    alphabet = _byte_level_alphabet()
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("o", "n")]
    vocab = {char: i for i, char in enumerate(alphabet)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = [AddedToken(t, special=True, normalized=False) for t in WHISPER_SPECIALS[1:]]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(WHISPER_TIMESTAMPS)]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in stamps])
    return tokenizer


def build_whisper(root: Path, *, layout: str = HUB, seed: int = 0) -> Path:
    """English-only Whisper (WhisperForConditionalGeneration, 1 encoder + 1 decoder layer, d_model 16).

    The audio front end is the real one (80 mel bins, 30 s windows → 3000 frames), so chunking and
    timestamps behave as with openai/whisper-*.en; the generation config carries what generate needs
    (decoder start, no-timestamps id, English-only, no forced ids, alignment heads for word times).
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    _check_layout(layout)
    _seeded(seed)
    tokenizer = _whisper_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIALS}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=32,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=False,
        forced_decoder_ids=None,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
        max_initial_timestamp_index=50,
        alignment_heads=[[0, 0], [0, 1]],
        max_length=config.max_target_positions,
    )
    model.save_pretrained(root)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(root)
    if layout == HUB:
        _to_hub_layout(root, processor, "feature_extractor")
    return root


# --- inputs -----------------------------------------------------------------------------------------


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 RGB image of seeded noise (what the IMAGE input carries)."""
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)


def tone(seconds: float, frequency: float = 440.0, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """A float32 mono sine at half scale (what the AUDIO input carries)."""
    t = np.arange(round(seconds * sampling_rate), dtype=np.float64) / sampling_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


BUILDERS = {
    "depth-estimation": build_depth_anything,
    "image-segmentation": build_segformer,
    "segment-anything-2": build_sam2,
    "image-to-text": build_blip,
    "audio-to-text": build_whisper,
}
