"""Is the model Triton serves the task this worker was started with? (`serve --task`)

`model-repo` writes the task into the generated config.pbtxt as parameter `task`; the adapter
reads it back through Triton's model config once the model is ready. A TorchScript model has no
such parameter, so `--task` against it fails the same way: with a message, not with 404s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .readiness import IncompatibleModel

TASK_PARAMETER = "task"


def configured_task(config: Mapping[str, Any]) -> str | None:
    """The `task` parameter of a Triton model config (gRPC `as_json` or HTTP form), if any."""
    inner = config.get("config", config)
    parameters = inner.get("parameters") if isinstance(inner, Mapping) else None
    if not isinstance(parameters, Mapping):
        return None
    entry = parameters.get(TASK_PARAMETER)
    if isinstance(entry, Mapping):
        value = entry.get("string_value", entry.get("stringValue"))
        return str(value) if value else None
    return None


def check_task(config: Mapping[str, Any], wanted: str, model_name: str) -> None:
    served = configured_task(config)
    if served == wanted:
        return
    if served is None:
        raise IncompatibleModel(
            f"--task {wanted}: Triton model '{model_name}' has no '{TASK_PARAMETER}' parameter (a TorchScript "
            "or hand-written model); generate the repository with `lpbyoc-worker model-repo --task "
            f"{wanted}` or start the adapter without --task"
        )
    raise IncompatibleModel(
        f"--task {wanted}: Triton model '{model_name}' serves task '{served}', not '{wanted}'; start the "
        f"adapter with --task {served} or regenerate the model repository for {wanted}"
    )


async def read_model_config(inference: Any) -> Mapping[str, Any]:
    """Triton's config of the model through a `TritonInference`."""
    return dict(await inference.model_config())


def task_verifier(inference: Any, wanted: str) -> Any:
    async def verify() -> None:
        check_task(await read_model_config(inference), wanted, inference.model_name)

    return verify
