"""Image captioning (BLIP) as ai-runner's /image-to-text: BlipForConditionalGeneration.generate.

transformers 5 has no image-to-text pipeline, so this calls the processor and `generate` directly.
An empty prompt captions unconditionally; a prompt conditions the caption, which then starts with it
(BLIP continues the prompt; the decoded text is returned whole). Generation is greedy unless the
snapshot's generation_config says otherwise, and bounded by max_new_tokens (default 30, at most 128).
"""

from __future__ import annotations

from pathlib import Path

from ._transformers_common import check_snapshot, int_param, load_model, load_processor
from .base import Device, InvalidRequest, Runtime, TaskRequest, TaskResult, require_image

DEFAULT_MAX_NEW_TOKENS = 30
MAX_NEW_TOKENS = 128


class ImageToText(Runtime):
    task = "image-to-text"
    media_inputs = ("IMAGE",)

    def __init__(self, model_dir: Path, device: Device) -> None:
        super().__init__(model_dir, device)
        from transformers import BlipForConditionalGeneration, BlipProcessor

        check_snapshot(model_dir, self.task)
        self.processor = load_processor(BlipProcessor, model_dir)
        self.model = load_model(BlipForConditionalGeneration, model_dir, device)
        self.max_positions = int(self.model.config.text_config.max_position_embeddings)

    def run(self, request: TaskRequest) -> TaskResult:
        import torch

        image = require_image(request)
        prompt = request.params.get("prompt") or ""
        if not isinstance(prompt, str):
            raise InvalidRequest(f"prompt must be a string, got {type(prompt).__name__}")
        max_new_tokens = int_param(
            request.params, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS, 1, MAX_NEW_TOKENS
        )
        inputs = self.processor(images=image, text=prompt or None, return_tensors="pt")
        prompt_tokens = inputs["input_ids"].shape[1] if "input_ids" in inputs else 1
        if prompt_tokens + max_new_tokens > self.max_positions:
            raise InvalidRequest(
                f"prompt is {prompt_tokens} tokens; with max_new_tokens {max_new_tokens} that passes the "
                f"model's {self.max_positions} positions: shorten the prompt"
            )
        inputs = {
            k: v.to(self.device.name, self.device.dtype) if v.is_floating_point() else v.to(self.device.name)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        text = self.processor.decode(ids[0], skip_special_tokens=True).strip()
        return TaskResult(data={"text": text})
