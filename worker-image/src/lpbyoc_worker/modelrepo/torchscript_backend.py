"""Triton python-backend model that runs a TorchScript module (copied into the repository as model.py).

Runs inside Triton's python backend stub, so it imports only numpy, torch and Triton's
`triton_python_backend_utils`, never the worker package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # provided by the python backend stub


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.input_names = [t["name"] for t in config["input"]]
        self.outputs = [
            (t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]
        ]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        filename = config["parameters"]["torchscript_file"]["string_value"]
        path = Path(args["model_repository"]) / args["model_version"] / filename
        if args["model_instance_kind"] == "GPU":
            # Fail the load rather than run a GPU capability on the CPU without anyone noticing.
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"instance kind KIND_GPU, but torch {torch.__version__} sees no CUDA device "
                    "(a CPU build of torch, or no GPU assigned to the container)"
                )
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
        self.module = torch.jit.load(str(path), map_location=self.device).eval()

    def execute(self, requests: list[Any]) -> list[Any]:
        # Requests run as one batch (what dynamic batching is for). Triton's batcher only joins
        # same-shaped requests; grouping by shape here keeps any other list of requests correct.
        # A failing group answers its own requests with the error, the others still succeed.
        responses: list[Any] = [None] * len(requests)
        groups: dict[Any, list[tuple[int, list[np.ndarray]]]] = {}
        for index, request in enumerate(requests):
            arrays = [
                pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names
            ]
            key = tuple(a.shape[1:] for a in arrays) if self.batched else index
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            try:
                if len(members) == 1:
                    batch = members[0][1]
                else:
                    batch = [np.concatenate([m[1][k] for m in members]) for k in range(len(self.input_names))]
                results = self._run(batch)
                offset = 0
                for index, arrays in members:
                    size = arrays[0].shape[0] if self.batched else 1
                    part = [r[offset : offset + size] for r in results] if len(members) > 1 else results
                    offset += size
                    responses[index] = pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor(name, np.ascontiguousarray(value.astype(dtype, copy=False)))
                            for (name, dtype), value in zip(self.outputs, part, strict=True)
                        ]
                    )
            except Exception as exc:
                error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
        return responses

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            result = self.module(*tensors)
        if isinstance(result, torch.Tensor):
            result = (result,)
        elif isinstance(result, dict):
            result = tuple(result[name] for name, _ in self.outputs)
        if len(result) != len(self.outputs):
            raise ValueError(
                f"the module returned {len(result)} outputs, the config declares {len(self.outputs)}"
            )
        return [r.detach().cpu().numpy() for r in result]

    def finalize(self) -> None:
        self.module = None
