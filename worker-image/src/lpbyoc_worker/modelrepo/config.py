"""config.pbtxt for a TorchScript model served by Triton's python backend (a pure function)."""

from __future__ import annotations

from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lpbyoc_worker.modelrepo.serving import TensorSpec, TritonServing

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]
# The python backend's model.py reads the weights file name from this parameter.
TORCHSCRIPT_PARAMETER = "torchscript_file"
TORCHSCRIPT_FILENAME = "model.pt"


class ConfigProblem(ValueError):
    """The serving settings cannot form a valid Triton model configuration."""


def _tensor(spec: TensorSpec, message: mc.ModelInput | mc.ModelOutput) -> None:
    message.name = spec.name
    message.data_type = mc.DataType.Value(spec.data_type)
    message.dims.extend(spec.dims)


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


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
