"""Speech recognition (Whisper) as ai-runner's /audio-to-text, through transformers' ASR pipeline.

AUDIO is float32 mono at 16 kHz. return_timestamps follows ai-runner: "true"/true/"sentence" →
segment timestamps, "word" → word timestamps (cross-attention alignment: the snapshot's
generation_config needs alignment_heads), "false"/false → none (chunks is then []). Audio longer than
30 s is chunked (chunk_length_s=30, the pipeline's strided chunking). A chunk whose end the model did
not close (end null) gets the audio's end as its end, so every timestamp is [float, float].
language (optional) goes to generate; an English-only model accepts only English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._transformers_common import check_snapshot, load_model, load_processor
from .base import Device, InvalidRequest, Runtime, TaskRequest, TaskResult

SAMPLING_RATE = 16000
MIN_SECONDS = 0.1
CHUNK_SECONDS = 30
ENGLISH = ("en", "english", "<|en|>")


def timestamps_mode(value: Any) -> bool | str:
    """ai-runner's return_timestamps values → the pipeline's (True, "word" or False)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    modes: dict[str | None, bool | str] = {"true": True, "sentence": True, "word": "word", "false": False}
    if text not in modes:
        raise InvalidRequest(
            f"return_timestamps must be 'sentence', 'word', 'true' or 'false', got {value!r}"
        )
    return modes[text]


def require_audio(audio: np.ndarray | None) -> np.ndarray:
    if audio is None or audio.ndim != 1 or audio.dtype != np.float32:
        shape = None if audio is None else f"{list(audio.shape)} {audio.dtype}"
        raise InvalidRequest(f"this task needs float32 mono audio at {SAMPLING_RATE} Hz, got {shape}")
    if audio.shape[0] < MIN_SECONDS * SAMPLING_RATE:
        raise InvalidRequest(
            f"the audio is {audio.shape[0] / SAMPLING_RATE:.3f} s; at least {MIN_SECONDS} s is needed"
        )
    if not np.all(np.isfinite(audio)):
        raise InvalidRequest("the audio holds NaN or infinite samples")
    return audio


class AudioToText(Runtime):
    task = "audio-to-text"
    media_inputs = ("AUDIO",)
    sampling_rate = SAMPLING_RATE

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration, pipeline

        check_snapshot(model_dir, self.task)
        processor = load_processor(AutoProcessor, model_dir)
        model = load_model(WhisperForConditionalGeneration, model_dir, device)
        self.multilingual = bool(getattr(model.generation_config, "is_multilingual", True))
        self.pipe = pipeline(
            "automatic-speech-recognition",
            model=model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            device=torch.device(device.name),
            dtype=device.dtype,
        )

    def run(self, request: TaskRequest) -> TaskResult:
        import torch

        audio = require_audio(request.audio)
        mode = timestamps_mode(request.params.get("return_timestamps", "true"))
        kwargs: dict[str, Any] = {
            "return_timestamps": mode,
            "generate_kwargs": self._generate_kwargs(request),
        }
        duration = audio.shape[0] / SAMPLING_RATE
        if duration > CHUNK_SECONDS:
            kwargs["chunk_length_s"] = CHUNK_SECONDS
        try:
            with torch.inference_mode():
                out: Any = self.pipe({"raw": audio, "sampling_rate": SAMPLING_RATE}, **kwargs)
        except ValueError as exc:  # an unknown language name and the like
            raise InvalidRequest(f"transcription refused the request: {exc}") from exc
        chunks = [chunk_json(c, duration) for c in out.get("chunks", [])] if mode else []
        return TaskResult(data={"text": out["text"], "chunks": chunks})

    def _generate_kwargs(self, request: TaskRequest) -> dict[str, Any]:
        language = request.params.get("language")
        if language in (None, ""):
            return {}
        if not isinstance(language, str):
            raise InvalidRequest(f"language must be a string, got {type(language).__name__}")
        if not self.multilingual:
            if language.strip().lower() in ENGLISH:
                return {}
            raise InvalidRequest(f"this model is English-only; language {language!r} is not available")
        return {"language": language}


def chunk_json(chunk: dict[str, Any], duration: float) -> dict[str, Any]:
    """One pipeline chunk as TextResponse's Chunk: [start, end] floats, end null → the audio's end."""
    start, end = chunk.get("timestamp", (None, None))
    start = 0.0 if start is None else float(start)
    end = max(duration, start) if end is None else float(end)
    return {"timestamp": [start, end], "text": chunk.get("text", "")}
