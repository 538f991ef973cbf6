"""The generated CRD: structural, current on disk, and in step with the pydantic spec model."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import jsonschema
import kubernetes_validate
import pytest
import yaml
from lpbyoc.commands.crd import crd_yaml
from lpbyoc.crd import build_crd, open_api_schema
from lpbyoc.spec import LivepeerCapabilitySpec
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "crds" / "livepeer.org_livepeercapabilities.yaml"


def structural_problems(node: Any, path: str = "") -> list[str]:
    """What apiextensions.k8s.io/v1 would refuse as a non-structural schema."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return [f"{path}: not an object"]
    if "$ref" in node or "$defs" in node:
        problems.append(f"{path}: $ref/$defs are not allowed")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: preserve-unknown-fields (the spec must be fully typed)")
    if node.get("x-kubernetes-int-or-string"):
        if "type" in node or node.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
            problems.append(f"{path}: int-or-string must be anyOf integer|string with no type")
    elif "type" not in node:
        problems.append(f"{path}: no type")
    elif "anyOf" in node or "oneOf" in node:
        problems.append(f"{path}: anyOf/oneOf beside a type")
    if node.get("type") == "null" or {"type": "null"} in node.get("anyOf", []):
        problems.append(f"{path}: null type (Kubernetes has none)")
    if node.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties false is forbidden")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if "default" in node:
        try:
            jsonschema.Draft202012Validator(node).validate(node["default"])
        except jsonschema.ValidationError as exc:
            problems.append(f"{path}: default does not validate: {exc.message}")
    for name, prop in node.get("properties", {}).items():
        problems += structural_problems(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    return problems


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(bare type, metadata) with Optional and Annotated removed."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata += getattr(item, "metadata", [item])
            continue
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation, metadata


def _bounds(metadata: list[Any], kind: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            facts["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            facts["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            facts["minItems" if kind == "array" else "minLength"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            facts["maxItems" if kind == "array" else "maxLength"] = item.max_length
        elif getattr(item, "pattern", None):
            facts["pattern"] = item.pattern
    return facts


def model_drift(model: type[BaseModel], schema: dict[str, Any], path: str = "spec") -> list[str]:
    """Differences between a pydantic model and its schema node, field by field."""
    drift: list[str] = []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    if set(fields) != set(schema.get("properties", {})):
        drift.append(f"{path}: properties {sorted(schema.get('properties', {}))} != model {sorted(fields)}")
    required = {alias for alias, f in fields.items() if f.is_required()}
    if required != set(schema.get("required", [])):
        drift.append(f"{path}: required {sorted(schema.get('required', []))} != model {sorted(required)}")
    for alias, field in fields.items():
        node = schema.get("properties", {}).get(alias)
        if node is not None:
            drift += _type_drift(field.annotation, list(field.metadata), node, f"{path}.{alias}")
    return drift


def _type_drift(annotation: Any, metadata: list[Any], node: dict[str, Any], path: str) -> list[str]:
    bare, more = _unwrap(annotation)
    metadata = metadata + more
    origin = typing.get_origin(bare)
    drift: list[str] = []
    if origin is typing.Literal:
        kind, enum = "string", list(typing.get_args(bare))
        if node.get("enum") != enum:
            drift.append(f"{path}: enum {node.get('enum')} != model {enum}")
    elif isinstance(bare, type) and issubclass(bare, BaseModel):
        kind = "object"
        drift += model_drift(bare, node, path)
    elif origin is list:
        kind = "array"
        drift += _type_drift(typing.get_args(bare)[0], [], node.get("items", {}), f"{path}[]")
    elif origin is dict:
        kind = "object"
    else:
        kind = {str: "string", int: "integer", bool: "boolean", float: "number"}[bare]
    actual = "string" if node.get("x-kubernetes-int-or-string") else node.get("type")
    if actual != kind:
        drift.append(f"{path}: type {actual} != model {kind}")
    expected_bounds = _bounds(metadata, kind)
    actual_bounds = {
        k: node[k]
        for k in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern")
        if k in node
    }
    if expected_bounds != actual_bounds:
        drift.append(f"{path}: bounds {actual_bounds} != model {expected_bounds}")
    return drift


def spec_schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_schema_is_structural() -> None:
    assert structural_problems(open_api_schema()) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        {"type": "object", "properties": {"a": {"description": "untyped"}}},
        {"type": "object", "additionalProperties": False, "properties": {}},
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1, "default": 0}}},
    ],
)
def test_structural_check_catches_what_kubernetes_refuses(broken: dict[str, Any]) -> None:
    assert structural_problems(broken)


def test_model_and_schema_agree_field_by_field() -> None:
    assert model_drift(LivepeerCapabilitySpec, spec_schema()) == []


def test_drift_check_notices_a_changed_schema() -> None:
    schema = spec_schema()
    del schema["properties"]["replicas"]
    schema["properties"]["gpu"]["properties"]["count"]["maximum"] = 99
    schema["properties"]["capability"]["properties"]["integration"]["enum"].append("grpc")
    drift = "\n".join(model_drift(LivepeerCapabilitySpec, schema))
    assert "replicas" in drift
    assert "spec.gpu.count: bounds" in drift
    assert "spec.capability.integration: enum" in drift


def test_schema_carries_the_spec_cel_rules_and_defaults() -> None:
    spec = spec_schema()
    messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert "model.repo is immutable: create a new capability for another model" in messages
    cache = spec["properties"]["cache"]
    assert any("oldSelf.storageClassName" in r["rule"] for r in cache["x-kubernetes-validations"])
    assert cache["default"] == {"size": "20Gi", "accessModes": ["ReadWriteOnce"], "retainOnDelete": False}
    assert spec["properties"]["gpu"]["properties"]["tolerations"]["default"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["properties"]["replicas"] == {"type": "integer", "default": 1, "minimum": 0, "maximum": 1000}


def test_crd_metadata_subresources_and_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "LivepeerCapability",
        ["lpcap"],
        ["livepeer"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.readyReplicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Capability": ".spec.capability.name",
        "Model": ".spec.model.repo",
        "Phase": ".status.phase",
        "Ready": ".status.readyReplicas",
        "Progress": ".status.progress",
        "Endpoint": ".status.endpoint",
        "Class": ".status.model.className",
        "Age": ".metadata.creationTimestamp",
    }
    wide_only = {c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1}
    assert wide_only == {"Endpoint", "Class"}  # `kubectl get lpcap -o wide` shows the model class
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["model"]["properties"]) == {
        "format",
        "className",
        "task",
        "tasks",
        "weightBytes",
        "weightDtype",
    }
    assert set(status["download"]["properties"]) == {
        "bytesDone",
        "bytesTotal",
        "filesDone",
        "filesTotal",
        "rateBytesPerSecond",
        "etaSeconds",
    }
    assert set(status["conditions"]["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_crd_is_a_valid_kubernetes_object(version: str) -> None:
    kubernetes_validate.validate(build_crd(), version, strict=True)


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "run: lpbyoc crd > crds/livepeer.org_livepeercapabilities.yaml"
    assert yaml.safe_load(CRD_FILE.read_text()) == build_crd()
