"""values.yaml and values.schema.json never drift, every key is documented, and bad values
are rejected by Helm's schema validation with a message that names the key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.rendering import CHART, merge, render
from tests.chart.test_render import BASE

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def walk_values(values: dict[str, Any], schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Yield drift problems between a values mapping and the schema node describing it."""
    props = schema.get("properties")
    if props is None:
        # A free-form map (additionalProperties is a schema): its keys are the user's.
        return
    for key in sorted(set(values) - set(props)):
        yield f"{path}{key}: in values.yaml, not in the schema"
    for key in sorted(set(props) - set(values)):
        yield f"{path}{key}: in the schema, not in values.yaml"
    for key in sorted(set(values) & set(props)):
        if isinstance(values[key], dict):
            yield from walk_values(values[key], props[key], f"{path}{key}.")


def object_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if schema.get("type") == "object":
        yield path or "<root>", schema
    for key, sub in schema.get("properties", {}).items():
        yield from object_nodes(sub, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        yield from object_nodes(schema["items"], f"{path}[]")


def test_values_and_schema_have_the_same_keys() -> None:
    assert list(walk_values(VALUES, SCHEMA)) == []


def test_the_drift_walk_catches_a_key_on_either_side() -> None:
    extra_value = merge(VALUES, {"watch": {"namespace": "x"}})
    assert list(walk_values(extra_value, SCHEMA)) == ["watch.namespace: in values.yaml, not in the schema"]
    fewer_values = merge(VALUES, {})
    del fewer_values["metrics"]["serviceMonitor"]["interval"]
    assert list(walk_values(fewer_values, SCHEMA)) == [
        "metrics.serviceMonitor.interval: in the schema, not in values.yaml"
    ]


def test_every_schema_object_closes_its_properties() -> None:
    for path, node in object_nodes(SCHEMA):
        assert "additionalProperties" in node, f"{path}: additionalProperties missing"
        if "properties" in node:
            assert node["additionalProperties"] is False, f"{path}: fixed keys must forbid others"


def test_default_values_pass_the_schema() -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(chart.values)


KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][\w.-]*):")


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = VALUES_TEXT.splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        above = lines[i - 1].strip() if i else ""
        # A key is documented by the comment right above it, or is a plain list/map entry of a documented key.
        if not above.startswith("#"):
            undocumented.append(f"line {i + 1}: {match['key']}")
    # resources.requests.cpu etc. sit under their documented parent.
    undocumented = [u for u in undocumented if not re.search(r": (cpu|memory)$", u)]
    assert undocumented == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watch": {"allNamespace": True}}, "at '/watch': additional properties 'allNamespace' not allowed"),
        ({"replicaCount": 2}, "at '': additional properties 'replicaCount' not allowed"),
        ({"metrics": {"port": "8080"}}, "at '/metrics/port': got string, want integer"),
        ({"metrics": {"port": 70000}}, "at '/metrics/port'"),
        (
            {"image": {"pullPolicy": "Sometimes"}},
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean"),
        ({"watch": {"namespaces": ["Team_A"]}}, "at '/watch/namespaces/0'"),
        ({"operator": {"hfEndpoint": "hub.local"}}, "at '/operator/hfEndpoint'"),
        ({"orchestrator": {"service": {"type": "Ingress"}}}, "at '/orchestrator/service/type'"),
        (
            {"podSecurityContext": {"seccompProfile": {"type": "None"}}},
            "at '/podSecurityContext/seccompProfile/type'",
        ),
        ({"resources": {"limits": {"gpu": 1}}}, "invalid propertyName 'gpu'"),
        ({"resources": {"limits": {"memory": "lots"}}}, "at '/resources/limits/memory'"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(values: dict[str, Any], message: str) -> None:
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(merge(chart.values, values))
    assert message in str(err.value)
    # Installing with the same values fails the same way (render validates before templating).
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(merge(BASE, values))
