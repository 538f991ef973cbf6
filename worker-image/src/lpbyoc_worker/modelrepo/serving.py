"""The worker's reading of `spec.serving.triton` (camelCase JSON from the operator).

Mirrors the operator's `TritonSpec` shape and limits; the worker does not import the operator
package, so this is a local copy of the contract. Unknown fields are errors: a mismatch between
operator and image versions must be loud, not silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

DataType = Literal["TYPE_FP32", "TYPE_FP16", "TYPE_UINT8", "TYPE_INT32", "TYPE_INT64"]
ModelFormat = Literal["auto", "torchscript", "tritonRepository", "diffusers", "transformers"]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TensorSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    data_type: DataType = "TYPE_FP32"
    dims: list[Annotated[int, Field(ge=-1)]] = Field(min_length=1, max_length=8)


class DynamicBatching(_Model):
    enabled: bool = True
    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)


def _image_tensor(name: str) -> TensorSpec:
    return TensorSpec(name=name, data_type="TYPE_FP32", dims=[3, -1, -1])


class TritonServing(_Model):
    model_format: ModelFormat = "auto"
    max_batch_size: int = Field(default=8, ge=0, le=1024)
    instance_count: int = Field(default=1, ge=1, le=16)
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    inputs: list[TensorSpec] = Field(
        default_factory=lambda: [_image_tensor("INPUT__0")], min_length=1, max_length=16
    )
    outputs: list[TensorSpec] = Field(
        default_factory=lambda: [_image_tensor("OUTPUT__0")], min_length=1, max_length=16
    )


class InvalidServingSpec(ValueError):
    """The serving JSON does not parse or does not match the TritonSpec shape."""


def parse_serving(text: str) -> TritonServing:
    try:
        serving = TritonServing.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidServingSpec(f"invalid --serving-json: {problems}") from None
    names = [t.name for t in (*serving.inputs, *serving.outputs)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidServingSpec(
            f"invalid --serving-json: tensor names must be unique, repeated: {duplicates}"
        )
    return serving
