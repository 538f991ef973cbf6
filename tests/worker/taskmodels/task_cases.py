"""The task models the Triton tests serve: which tiny model backs which task, and one request each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lpbyoc_worker.runtimes.backends import LocalTaskBackend
from lpbyoc_worker.runtimes.base import TaskRequest

from tests.support import tiny_diffusers, tiny_transformers
from tests.support.tiny_transformers import random_image, tone

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
