"""The single-tensor TorchScript filter seen as an image-to-image task backend.

Without `--task` the worker serves a TorchScript image filter (NCHW float in, NCHW float out).
Its ai-runner `/image-to-image` route goes through the same route code as the task runtimes, so it
answers go-livepeer the same way; the filter has no prompt, no sampler and no safety checker, so
it returns the filtered image once per requested image (with seed + i) and reports the safety
check as unavailable.
"""

from __future__ import annotations

import numpy as np

from lpbyoc_worker.runtimes.base import TaskRequest, TaskResult, require_image

from . import imaging
from .backend import InferenceBackend


class FilterImageToImage:
    task = "image-to-image"

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend

    async def run(self, request: TaskRequest) -> TaskResult:
        pixels = require_image(request)
        output = await self.backend.infer(imaging.image_to_batch(pixels))
        image = imaging.batch_to_image(output)
        count = int(request.params.get("num_images_per_prompt", 1))
        seed = int(request.params["seed"])
        return TaskResult(
            data={
                "seeds": [seed + i for i in range(count)],
                "nsfw": [False] * count,
                "safety_checker": False,
            },
            tensors={"IMAGES": np.repeat(image[np.newaxis], count, axis=0)},
        )

    async def is_model_ready(self) -> bool:
        return await self.backend.is_model_ready()

    async def close(self) -> None:
        await self.backend.close()
