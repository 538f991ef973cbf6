"""Reject, without a cluster, what the API server would reject for a LivepeerCapability.

Three passes, in the API server's order: the CRD's openAPIV3Schema (with unknown fields
rejected, as `kubectl` strict field validation does), defaulting (the pydantic model carries
the same defaults as the schema), then the CRD's CEL `x-kubernetes-validations` rules
evaluated with cel-python, transition rules (`oldSelf`) only when an old object is given.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import celpy
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from lpbyoc.crd import open_api_schema
from lpbyoc.spec import API_VERSION, KIND, LivepeerCapabilitySpec, parse_spec

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SpecError(ValueError):
    """A capability the API server would refuse; `errors` name the field of each problem."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


def _strict(schema: Any) -> Any:
    """The schema with unknown properties forbidden (pruning would drop them silently)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: (v if k in ("default", "enum", "x-kubernetes-validations") else _strict(v))
        for k, v in schema.items()
    }
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


@cache
def _validator() -> Draft202012Validator:
    root = copy.deepcopy(open_api_schema())
    root["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return Draft202012Validator(_strict(root))


@cache
def _spec_schema() -> dict[str, Any]:
    return dict(open_api_schema()["properties"]["spec"])


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def schema_errors(body: Mapping[str, Any]) -> list[str]:
    errors = []
    for error in sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        where = _path(error.absolute_path)
        if error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            for name in sorted(set(error.instance) - set(known)):
                errors.append(f'unknown field "{_path([*error.absolute_path, name])}"')
        elif error.validator == "pattern":
            errors.append(
                f"{where}: Invalid value: {error.instance!r}: should match {error.validator_value!r}"
            )
        else:
            errors.append(f"{where}: {error.message}")
    return errors


def _rules_at(
    schema: Mapping[str, Any], value: Any, path: list[Any]
) -> Iterator[tuple[list[Any], dict[str, str], Any]]:
    """Every CEL rule in `schema` with the value it applies to (absent values have no rules run)."""
    for rule in schema.get("x-kubernetes-validations", ()):
        yield path, rule, value
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                yield from _rules_at(prop, value[name], [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _rules_at(schema["items"], item, [*path, index])


def _at(value: Any, path: list[Any]) -> Any:
    for part in path:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if not (in_dict or in_list):
            return None
        value = value[part]
    return value


def cel_errors(spec: Mapping[str, Any], old_spec: Mapping[str, Any] | None = None) -> list[str]:
    """Evaluate the spec schema's CEL rules on a defaulted spec (camelCase dict)."""
    schema = _spec_schema()
    errors = []
    converted: dict[tuple[Any, ...], Any] = {}  # several rules share one node: convert it once
    for path, rule, value in _rules_at(schema, dict(spec), ["spec"]):
        if tuple(path) not in converted:
            converted[tuple(path)] = celpy.json_to_cel(value)
        activation = {"self": converted[tuple(path)]}
        if "oldSelf" in rule["rule"]:
            old_value = _at(old_spec, path[1:]) if old_spec is not None else None
            if old_value is None:
                continue  # transition rules apply to updates only
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        try:
            passed = bool(_program(rule["rule"]).evaluate(activation))
        except celpy.CELEvalError as exc:
            passed, rule = False, {**rule, "message": f"{rule['message']} ({exc.args[0]})"}
        if not passed:
            errors.append(f'{_path(path)}: Invalid value: "object": {rule["message"]}')
    return errors


def _pydantic_errors(exc: ValidationError) -> list[str]:
    return [f"{_path(['spec', *err['loc']])}: {err['msg']}" for err in exc.errors()]


def defaulted_spec(raw_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as stored after API-server defaulting (camelCase, absent optionals omitted)."""
    return parse_spec(dict(raw_spec)).model_dump(by_alias=True, exclude_none=True, mode="json")


def validation_errors(body: Mapping[str, Any], old_body: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason the API server would refuse `body` (an update of `old_body` when given)."""
    errors = []
    if body.get("apiVersion") != API_VERSION or body.get("kind") != KIND:
        return [f"not a {KIND}: apiVersion {body.get('apiVersion')!r}, kind {body.get('kind')!r}"]
    name = (body.get("metadata") or {}).get("name")
    if not name:
        errors.append("metadata.name: Required value")
    elif isinstance(name, str) and not _DNS_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: must be a lowercase RFC 1123 subdomain")
    errors += schema_errors(body)
    if errors:
        return errors
    try:
        spec = defaulted_spec(body["spec"])
    except ValidationError as exc:
        return _pydantic_errors(exc)
    old_spec = None
    if old_body is not None and isinstance(old_body.get("spec"), Mapping):
        try:
            old_spec = defaulted_spec(old_body["spec"])
        except ValidationError:
            old_spec = None  # a stored object that no longer parses cannot block its own repair
    return cel_errors(spec, old_spec)


def validate_capability(
    body: Mapping[str, Any], old_body: Mapping[str, Any] | None = None
) -> LivepeerCapabilitySpec:
    """The parsed spec of a valid capability; raises SpecError naming each bad field."""
    errors = validation_errors(body, old_body)
    if errors:
        raise SpecError(errors)
    return parse_spec(dict(body["spec"]))
