"""The LivepeerCapability CRD, generated from the pydantic spec model (`lpbyoc.spec`).

The spec schema is pydantic's JSON schema made structural, as apiextensions.k8s.io/v1
requires: references inlined, `Optional` expressed by leaving a field out of `required`
(never anyOf-with-null), defaults taken from the model (factories included), titles dropped,
quantities int-or-string. Unknown fields are pruned by the API server (strict field
validation reports them); `lpbyoc.validation` rejects them outright.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, NoDefault
from pydantic_core import core_schema, to_jsonable_python

from lpbyoc.policy import PHASES
from lpbyoc.spec import GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION, LivepeerCapabilitySpec

CRD_NAME = f"{PLURAL}.{GROUP}"
CATEGORY = "livepeer"


class _StructuralSchema(GenerateJsonSchema):
    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        # Kubernetes has no null type: an optional field is one that is not required.
        return self.generate_inner(schema["schema"])

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default_factory" in schema:
            default = schema["default_factory"]()  # type: ignore[call-arg]
        else:
            default = schema.get("default", NoDefault)
        return NoDefault if default is None else default

    def encode_default(self, dft: Any) -> Any:
        return to_jsonable_python(dft, by_alias=True, exclude_none=True)


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key in ("properties",):
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("default", "enum", "x-kubernetes-validations"):
            out[key] = value
        else:
            out[key] = _structural(value, defs)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a pydantic model (camelCase properties)."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_StructuralSchema)
    return dict(_structural(raw, raw.get("$defs", {})))


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }


def status_schema() -> dict[str, Any]:
    integer = {"type": "integer", "format": "int64", "minimum": 0}
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": list(PHASES)},
            "observedGeneration": dict(integer),
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "replicas": {"type": "integer", "format": "int32", "minimum": 0},
            "readyReplicas": {"type": "integer", "format": "int32", "minimum": 0},
            "selector": {
                "type": "string",
                "description": "Label selector of the worker pods (scale subresource).",
            },
            "endpoint": {"type": "string", "description": "In-cluster URL of the worker Service."},
            "resolvedRevision": {"type": "string", "description": "Commit SHA the revision resolved to."},
            "progress": {"type": "string", "description": "Prefetch progress, e.g. 42%."},
            "model": {
                "type": "object",
                "description": "What the cached snapshot is, as the prefetcher detected it.",
                "properties": {
                    "format": {
                        "type": "string",
                        "description": "diffusers, transformers, torchscript, tritonRepository or unknown.",
                    },
                    "className": {
                        "type": "string",
                        "description": "diffusers _class_name or the first transformers architecture.",
                    },
                    "task": {"type": "string", "description": "The task the worker serves."},
                    "tasks": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Every task the model can serve.",
                    },
                    "weightBytes": dict(integer),
                    "weightDtype": {"type": "string", "description": "Dominant safetensors dtype, e.g. F16."},
                },
            },
            "download": {
                "type": "object",
                "properties": {
                    "bytesDone": dict(integer),
                    "bytesTotal": dict(integer),
                    "filesDone": dict(integer),
                    "filesTotal": dict(integer),
                    "rateBytesPerSecond": {"type": "number", "minimum": 0},
                    "etaSeconds": {"type": "number", "minimum": 0},
                },
            },
        },
    }


PRINTER_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Capability", "type": "string", "jsonPath": ".spec.capability.name"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.repo"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
    {"name": "Class", "type": "string", "jsonPath": ".status.model.className", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def open_api_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": model_schema(LivepeerCapabilitySpec),
            "status": status_schema(),
        },
    }


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "livepeer-byoc"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.readyReplicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                }
            ],
        },
    }
