"""Render the chart with Helm's own Go SDK (helm-python-sdk) and read the result as objects."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "livepeer-byoc-operator"
RELEASE = "lp"
NAMESPACE = "lpbyoc"
# The oldest and newest Kubernetes minor versions the chart supports (Chart.yaml kubeVersion).
KUBE_VERSIONS = ("1.28", "1.34")


def load_generator() -> ModuleType:
    """charts/generate.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location("chart_generate", REPO / "charts" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crd_available() -> bool:
    return bool(load_generator().CRD_COPY.exists())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
    """{template path: text}; raises helm_python.HelmValuesError / HelmRenderError."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)


def render_objects(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and blank templates left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render(values, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    rendered = render(values)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in of_kind(objects, kind)
        if component is None
        or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} ({component}), got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)
