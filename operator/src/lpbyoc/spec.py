"""The LivepeerCapability spec: the one source of truth.

The CRD's openAPIV3Schema is generated from these models (`lpbyoc.crd`), so the schema
the API server enforces and the model the operator parses cannot drift. Constraints that
a JSON schema cannot say (cross-field rules, immutability) are CEL rules attached with
`json_schema_extra={"x-kubernetes-validations": [...]}`; `lpbyoc.validation` mirrors
their intent in Python for the render path and the tests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "livepeer.org"
VERSION = "v1alpha1"
KIND = "LivepeerCapability"
PLURAL = "livepeercapabilities"
SINGULAR = "livepeercapability"
SHORT_NAME = "lpcap"
API_VERSION = f"{GROUP}/{VERSION}"

# go-livepeer panics on any other pipeline name (core/ai.go), so the CRD enforces the enum.
Pipeline = Literal[
    "text-to-image",
    "image-to-image",
    "image-to-video",
    "upscale",
    "audio-to-text",
    "segment-anything-2",
    "llm",
    "image-to-text",
    "live-video-to-video",
    "text-to-speech",
]
PIPELINES: tuple[str, ...] = Pipeline.__args__  # type: ignore[attr-defined]

# What a diffusers/transformers model does (the worker's task registry, runtimes/registry.py).
Task = Literal[
    "text-to-image",
    "image-to-image",
    "upscale",
    "image-to-video",
    "depth-estimation",
    "image-segmentation",
    "segment-anything-2",
    "image-to-text",
    "audio-to-text",
]
TASKS: tuple[str, ...] = Task.__args__  # type: ignore[attr-defined]
# Tasks a live-video capability runs frame by frame.
LIVE_TASKS: tuple[str, ...] = ("image-to-image", "depth-estimation", "image-segmentation")
HF_FORMATS: tuple[str, ...] = ("diffusers", "transformers")

Integration = Literal["aiModels", "byoc", "liveRunner"]
Currency = Literal["", "wei", "eth", "usd"]
AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# A Hugging Face repo id: "name" or "owner/name".
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
HF_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"
# A full commit SHA, or a branch/tag name (git ref-name rules, simplified).
REVISION = r"^([0-9a-f]{40}|[A-Za-z0-9._][A-Za-z0-9._/-]{0,254})$"
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _quantity_text(value: Any) -> Any:
    # The CRD types quantities int-or-string (as Kubernetes does): `size: 20` means "20".
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    Field(
        pattern=QUANTITY,
        json_schema_extra={"x-kubernetes-int-or-string": True},
    ),
    BeforeValidator(_quantity_text),
]


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"rule": rule, "message": message}


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SecretKeyRef(_Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="Secret name.")
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key inside the Secret."
    )


class CapabilitySpec(_Model):
    name: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="Capability name clients ask for (BYOC `name`, live app, or aiModels model_id).",
    )
    description: str = Field(default="", max_length=1024)
    integration: Integration = Field(
        default="byoc", description="How go-livepeer attaches the worker: aiModels, byoc or liveRunner."
    )
    pipeline: Pipeline | None = Field(
        default=None, description="go-livepeer pipeline name; required for integration=aiModels."
    )
    model_id: str | None = Field(
        default=None,
        max_length=256,
        description="aiModels model_id; defaults to spec.model.repo (live pipelines: the app name).",
    )


class ModelSource(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!self.revision.contains('..') && !self.revision.contains('//') && !self.revision.endsWith('/') && !self.revision.endsWith('.lock')",
                    "model.revision must be a 40-hex commit SHA or a valid branch/tag name",
                ),
            ]
        }
    )

    repo: str = Field(pattern=HF_REPO, description="Hugging Face repo id, e.g. org/name.")
    revision: str = Field(
        default="main",
        pattern=REVISION,
        description="Commit SHA (40 hex) or a branch/tag; a branch is resolved and pinned.",
    )
    allow_patterns: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=64)
    ignore_patterns: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=64)
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding a Hub token for gated or private repos."
    )
    variant: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,32}$",
        description="Weight variant, e.g. fp16: the default file selection takes *.fp16.safetensors "
        "instead of the full-precision files, and the worker loads that variant.",
    )


def _default_access_modes() -> list[AccessMode]:
    return ["ReadWriteOnce"]


class CacheSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(oldSelf.storageClassName) || (has(self.storageClassName) && self.storageClassName == oldSelf.storageClassName)",
                    "storageClassName is immutable: a PVC cannot change its class",
                ),
                _cel(
                    "!has(oldSelf.existingClaim) || (has(self.existingClaim) && self.existingClaim == oldSelf.existingClaim)",
                    "existingClaim is immutable: switching claims would orphan the cached weights",
                ),
            ]
        }
    )

    size: Quantity = Field(default="20Gi", description="Requested size of the weights PVC.")
    storage_class_name: str | None = Field(default=None, max_length=253)
    access_modes: list[AccessMode] = Field(default_factory=_default_access_modes, min_length=1, max_length=4)
    existing_claim: str | None = Field(
        default=None, max_length=253, description="Use this PVC instead of creating one."
    )
    retain_on_delete: bool = Field(
        default=False, description="Keep the weights PVC when the last capability using it is deleted."
    )


class TensorSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    data_type: Literal["TYPE_FP32", "TYPE_FP16", "TYPE_UINT8", "TYPE_INT32", "TYPE_INT64"] = "TYPE_FP32"
    dims: list[Annotated[int, Field(ge=-1)]] = Field(min_length=1, max_length=8)


def _default_inputs() -> list[TensorSpec]:
    return [TensorSpec(name="INPUT__0", data_type="TYPE_FP32", dims=[3, -1, -1])]


def _default_outputs() -> list[TensorSpec]:
    return [TensorSpec(name="OUTPUT__0", data_type="TYPE_FP32", dims=[3, -1, -1])]


class DynamicBatching(_Model):
    enabled: bool = True
    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)


class TritonSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!self.dynamicBatching.enabled || self.maxBatchSize > 0",
                    "dynamicBatching needs maxBatchSize > 0 (Triton batches only models that declare a batch dimension)",
                ),
            ]
        }
    )

    model_format: Literal["auto", "torchscript", "tritonRepository", "diffusers", "transformers"] = Field(
        default="auto",
        description="auto: model_index.json at the top is diffusers, config.json with architectures "
        "is transformers, then a TorchScript file, then a Triton repository (config.pbtxt) as is.",
    )
    max_batch_size: int = Field(default=8, ge=0, le=1024)
    instance_count: int = Field(default=1, ge=1, le=16)
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    inputs: list[TensorSpec] = Field(default_factory=_default_inputs, min_length=1, max_length=16)
    outputs: list[TensorSpec] = Field(default_factory=_default_outputs, min_length=1, max_length=16)


class ServingSpec(_Model):
    image: str = Field(default="ghcr.io/livepeer-byoc/worker:0.1.0", min_length=1, max_length=512)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    port: int = Field(default=8000, ge=1024, le=65535, description="Adapter port (runners use 8000).")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    triton: TritonSpec = Field(default_factory=TritonSpec)
    task: Task | None = Field(
        default=None,
        description="What a diffusers/transformers model does, when the capability's pipeline does not "
        "say it (byoc, live-video-to-video): e.g. depth-estimation. Overrides the pipeline's task.",
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Bearer token the orchestrator must send to the worker (Authorization: Bearer).",
    )


class Toleration(_Model):
    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


def _default_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class GPUSpec(_Model):
    count: int = Field(default=1, ge=0, le=16, description="GPUs per replica; 0 runs on CPU.")
    resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
        description="Extended resource, e.g. nvidia.com/gpu or nvidia.com/mig-1g.10gb.",
    )
    product: str | None = Field(
        default=None,
        max_length=63,
        description="GPU Feature Discovery product label value (nvidia.com/gpu.product).",
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=_default_tolerations, max_length=32)


class PricingSpec(_Model):
    price_per_unit: int = Field(default=0, ge=0, description="Price per unit (wei unless currency says).")
    pixels_per_unit: int = Field(default=1, ge=1, description="aiModels: pixels per unit.")
    price_scaling: int = Field(default=1, ge=1, description="BYOC: denominator of price_per_unit.")
    currency: Currency = Field(default="", description='"" (wei), wei, eth; usd for liveRunner.')


class TLSSpec(_Model):
    ca_bundle_secret_ref: SecretKeyRef | None = None
    insecure_skip_verify: bool = Field(
        default=False, description="Accept the orchestrator's self-signed certificate unverified."
    )


class WorkloadRef(_Model):
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str = Field(pattern=DNS_LABEL, max_length=63)


class OrchestratorRef(_Model):
    name: str = Field(
        pattern=DNS_LABEL,
        max_length=40,
        description="Logical orchestrator name; capabilities naming it share one aiModels.json.",
    )
    workload_ref: WorkloadRef | None = Field(
        default=None, description="aiModels: the go-livepeer workload to restart on change."
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        max_length=512,
        description="byoc/liveRunner: orchestrator base URL, e.g. https://orch:8935.",
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="byoc/liveRunner: Secret key holding the orchSecret."
    )
    tls: TLSSpec = Field(default_factory=TLSSpec)


class EnvVar(_Model):
    name: str = Field(pattern=ENV_NAME, max_length=256)
    value: str = Field(default="", max_length=32768)


class ResourceList(_Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Model):
    requests: ResourceList = Field(default_factory=lambda: ResourceList(cpu="1", memory="4Gi"))
    limits: ResourceList = Field(default_factory=lambda: ResourceList(memory="16Gi"))


class LivepeerCapabilitySpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.capability.integration != 'aiModels' || has(self.capability.pipeline)",
                    "capability.pipeline is required when integration is aiModels",
                ),
                _cel(
                    "self.capability.integration != 'aiModels' || has(self.orchestrator.workloadRef)",
                    "orchestrator.workloadRef is required when integration is aiModels",
                ),
                _cel(
                    "self.capability.integration == 'aiModels' || (has(self.orchestrator.url) && has(self.orchestrator.secretRef))",
                    "orchestrator.url and orchestrator.secretRef are required for byoc and liveRunner",
                ),
                _cel(
                    "self.model.repo == oldSelf.model.repo",
                    "model.repo is immutable: create a new capability for another model",
                ),
                _cel(
                    "self.pricing.currency != 'usd' || self.capability.integration == 'liveRunner'",
                    "currency usd is only understood by liveRunner price_info",
                ),
                _cel(
                    "!has(self.capability.pipeline) || self.capability.pipeline != 'live-video-to-video'"
                    " || !has(self.serving.triton.modelFormat)"
                    " || !(self.serving.triton.modelFormat in ['diffusers', 'transformers'])"
                    " || (has(self.serving.task) && self.serving.task in ['image-to-image', 'depth-estimation', 'image-segmentation'])",
                    "a live-video-to-video capability serving a diffusers/transformers model needs "
                    "serving.task: image-to-image, depth-estimation or image-segmentation",
                ),
                _cel(
                    "!has(self.serving.task) || !has(self.capability.pipeline)"
                    " || self.capability.pipeline != 'live-video-to-video'"
                    " || self.serving.task in ['image-to-image', 'depth-estimation', 'image-segmentation']",
                    "live-video-to-video runs frame by frame: serving.task must be image-to-image, "
                    "depth-estimation or image-segmentation",
                ),
            ]
        }
    )

    capability: CapabilitySpec
    model: ModelSource
    orchestrator: OrchestratorRef
    cache: CacheSpec = Field(default_factory=CacheSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    gpu: GPUSpec = Field(default_factory=GPUSpec)
    replicas: int = Field(default=1, ge=0, le=1000)
    capacity_per_replica: int = Field(
        default=1, ge=1, le=1024, description="Concurrent jobs/streams one replica serves."
    )
    pricing: PricingSpec = Field(default_factory=PricingSpec)
    warm: bool = Field(default=True, description="aiModels: advertise the model as warm.")
    resources: Resources = Field(default_factory=Resources)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)

    @property
    def model_id(self) -> str:
        return self.capability.model_id or self.model.repo


def parse_spec(raw: dict[str, Any]) -> LivepeerCapabilitySpec:
    """Parse a CR's `.spec` (camelCase) into the model; raises pydantic.ValidationError."""
    return LivepeerCapabilitySpec.model_validate(raw)
