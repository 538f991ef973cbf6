"""config.pbtxt for the python-backend models the worker generates (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lpbyoc_worker.modelrepo.serving import TensorSpec, TritonServing
from lpbyoc_worker.runtimes.base import Runtime

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]
# The python backend's model.py reads the weights file name from this parameter.
TORCHSCRIPT_PARAMETER = "torchscript_file"
TORCHSCRIPT_FILENAME = "model.pt"


class ConfigProblem(ValueError):
    """The serving settings cannot form a valid Triton model configuration."""


def _tensor(spec: TensorSpec, message: mc.ModelInput | mc.ModelOutput) -> None:
    _fill(message, spec.name, spec.data_type, spec.dims)


def _fill(message: mc.ModelInput | mc.ModelOutput, name: str, data_type: str, dims: Sequence[int]) -> None:
    message.name = name
    message.data_type = mc.DataType.Value(data_type)
    message.dims.extend(dims)


def torchscript_model_config(
    serving: TritonServing, *, model_name: str, kind: InstanceKind
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=model_name, backend="python", max_batch_size=serving.max_batch_size)
    for spec in serving.inputs:
        _tensor(spec, config.input.add())
    for spec in serving.outputs:
        _tensor(spec, config.output.add())
    if serving.dynamic_batching.enabled:
        if serving.max_batch_size == 0:
            raise ConfigProblem(
                "dynamicBatching.enabled needs maxBatchSize > 0 (Triton batches along a leading batch "
                "dimension); set maxBatchSize or disable dynamicBatching"
            )
        # SetInParent: the block must be present even when the delay is 0 (the proto default).
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.max_queue_delay_microseconds = (
            serving.dynamic_batching.max_queue_delay_microseconds
        )
    config.instance_group.add(count=serving.instance_count, kind=mc.ModelInstanceGroup.Kind.Value(kind))
    config.parameters[TORCHSCRIPT_PARAMETER].string_value = TORCHSCRIPT_FILENAME
    return config


# The task model's fixed tensors (runtimes/backends.py fills and reads them).
TASK_INPUTS = {
    "PARAMS": ("TYPE_STRING", (1,)),
    "IMAGE": ("TYPE_UINT8", (-1, -1, 3)),
    "AUDIO": ("TYPE_FP32", (-1,)),
}
RESULT_OUTPUT = ("RESULT", "TYPE_STRING", (1,))


def task_model_config(
    runtime: type[Runtime],
    serving: TritonServing,
    *,
    model_dir: str,
    model_name: str,
    kind: InstanceKind,
) -> mc.ModelConfig:
    """A python-backend model running `runtime` on the snapshot at `model_dir`.

    Families that batch get Triton's dynamic batcher (it joins same-shaped requests); the others
    take one request at a time, so the batch settings of the spec do not apply to them.
    """
    max_batch = serving.max_batch_size if runtime.batches else 0
    config = mc.ModelConfig(name=model_name, backend="python", max_batch_size=max_batch)
    for name in ("PARAMS", *runtime.media_inputs):
        data_type, dims = TASK_INPUTS[name]
        _fill(config.input.add(), name, data_type, dims)
    for name, data_type, dims in (RESULT_OUTPUT, *((o.name, o.data_type, o.dims) for o in runtime.outputs)):
        _fill(config.output.add(), name, data_type, dims)
    if max_batch > 0 and serving.dynamic_batching.enabled:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.max_queue_delay_microseconds = (
            serving.dynamic_batching.max_queue_delay_microseconds
        )
    config.instance_group.add(count=serving.instance_count, kind=mc.ModelInstanceGroup.Kind.Value(kind))
    config.parameters["task"].string_value = runtime.task
    config.parameters["model_dir"].string_value = model_dir
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
