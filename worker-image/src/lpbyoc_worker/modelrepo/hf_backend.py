"""Triton python-backend model that serves one task runtime (copied into the repository as model.py).

The config's parameters name the task and the snapshot directory; `initialize` loads the runtime
once (offline, from that directory) and keeps it resident. Requests carry PARAMS (JSON bytes) and
the task's media (IMAGE uint8 HxWx3, AUDIO float32); answers carry RESULT (JSON bytes) and the
task's tensors. A request the client must fix fails with INVALID_ARG (the adapter answers 400);
anything else fails that request alone with INTERNAL.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

# Serving never reaches the Hub: every file comes from the prefetched snapshot (the image is shared
# with the prefetch Job, which must stay online, so this is set here and not in the image).
os.environ["HF_HUB_OFFLINE"] = "1"

from lpbyoc_worker.runtimes.backends import AUDIO, IMAGE, PARAMS, RESULT
from lpbyoc_worker.runtimes.base import InvalidRequest, TaskRequest, bound_cpu_threads, pick_device
from lpbyoc_worker.runtimes.registry import load_runtime

log = logging.getLogger("lpbyoc.hf_backend")


def _parameter(config: dict[str, Any], name: str) -> str:
    try:
        return str(config["parameters"][name]["string_value"])
    except KeyError:
        raise RuntimeError(f"config.pbtxt has no parameter {name!r}: regenerate it with model-repo") from None


def _error(message: str, *, invalid: bool) -> Any:
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.input_names = {t["name"] for t in config["input"]}
        self.output_names = [t["name"] for t in config["output"]]
        task = _parameter(config, "task")
        model_dir = Path(_parameter(config, "model_dir"))
        kind = "GPU" if args["model_instance_kind"] == "GPU" else "CPU"
        device = pick_device(kind, int(args.get("model_instance_device_id", 0)))
        threads = bound_cpu_threads()
        self.runtime = load_runtime(task, model_dir, device)
        log.info("loaded %s from %s on %s (%d CPU threads)", task, model_dir, device.name, threads)

    def _request(self, request: Any) -> TaskRequest:
        def tensor(name: str) -> np.ndarray | None:
            if name not in self.input_names:
                return None
            found = pb_utils.get_input_tensor_by_name(request, name)
            if found is None:
                return None
            array = found.as_numpy()
            if self.batched:
                if array.shape[0] != 1:
                    raise InvalidRequest(
                        f"{name}: send one item per request, got a batch of {array.shape[0]}"
                    )
                array = array[0]
            return array

        raw = tensor(PARAMS)
        try:
            params = json.loads(raw.reshape(-1)[0]) if raw is not None and raw.size else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"PARAMS is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise InvalidRequest("PARAMS must be a JSON object")
        return TaskRequest(params=params, image=tensor(IMAGE), audio=tensor(AUDIO))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        parsed: list[tuple[int, TaskRequest]] = []
        for index, request in enumerate(requests):
            try:
                parsed.append((index, self._request(request)))
            except InvalidRequest as exc:
                responses[index] = _error(str(exc), invalid=True)
        try:
            outcomes = self.runtime.run_batch([task_request for _, task_request in parsed])
        except Exception as exc:
            log.exception("task %s failed", self.runtime.task)
            outcomes = [exc] * len(parsed)
        for (index, _), outcome in zip(parsed, outcomes, strict=True):
            responses[index] = self._response(outcome)
        return responses

    def _response(self, outcome: Any) -> Any:
        if isinstance(outcome, InvalidRequest):
            return _error(str(outcome), invalid=True)
        if isinstance(outcome, Exception):
            return _error(f"{type(outcome).__name__}: {outcome}", invalid=False)
        tensors = [
            pb_utils.Tensor(RESULT, self._item(np.array([json.dumps(outcome.data).encode()], np.object_)))
        ]
        for name in self.output_names:
            if name == RESULT:
                continue
            if name not in outcome.tensors:
                return _error(f"the runtime returned no {name}", invalid=False)
            tensors.append(pb_utils.Tensor(name, self._item(np.ascontiguousarray(outcome.tensors[name]))))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _item(self, array: np.ndarray) -> np.ndarray:
        return array[np.newaxis] if self.batched else array

    def finalize(self) -> None:
        self.runtime = None
