"""The chart ships the generated CRD (crds/ in the repository) and applies crds.enabled and
crds.keep to it, like cert-manager."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.chart.rendering import CHART, KUBE_VERSIONS, RELEASE, crd_available, load_generator, render_objects

GENERATOR = load_generator()
needs_crd = pytest.mark.skipif(
    not GENERATOR.CRD_SOURCE.exists(),
    reason="crds/livepeer.org_livepeercapabilities.yaml is not generated yet (make crd)",
)

# A small CRD standing in for the generated one, to exercise the template's enabled/keep logic.
SAMPLE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "livepeercapabilities.livepeer.org"},
    "spec": {
        "group": "livepeer.org",
        "names": {
            "kind": "LivepeerCapability",
            "plural": "livepeercapabilities",
            "singular": "livepeercapability",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


@pytest.fixture
def chart_with_sample_crd(tmp_path: Path) -> Path:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    target = copy / GENERATOR.CRD_COPY.relative_to(CHART)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(SAMPLE_CRD))
    return copy


def crds_of(chart: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(chart) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace="lpbyoc")
    docs = [
        d
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    return [d for d in docs if d["kind"] == "CustomResourceDefinition"]


def test_crd_is_installed_and_kept_by_default(chart_with_sample_crd: Path) -> None:
    [crd] = crds_of(chart_with_sample_crd, {})
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["spec"] == SAMPLE_CRD["spec"]
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)


def test_crd_keep_false_lets_uninstall_delete_it(chart_with_sample_crd: Path) -> None:
    [crd] = crds_of(chart_with_sample_crd, {"crds": {"keep": False}})
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_crds_disabled_renders_none(chart_with_sample_crd: Path) -> None:
    assert crds_of(chart_with_sample_crd, {"crds": {"enabled": False}}) == []


def test_missing_crd_copy_is_a_clear_error(tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / GENERATOR.CRD_COPY.relative_to(CHART)).unlink(missing_ok=True)
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("run `python charts/generate.py`")):
        crds_of(copy, {})


def test_the_keep_warning_is_next_to_the_value() -> None:
    text = (CHART / "values.yaml").read_text()
    before_keep = text[: text.index("  keep: true")]
    assert "deleting the CRD deletes every LivepeerCapability" in before_keep.rsplit("enabled: true", 1)[1]


@needs_crd
def test_chart_copy_is_identical_to_the_generated_crd() -> None:
    assert GENERATOR.crd_link_is_current(), "run: python charts/generate.py"
    assert GENERATOR.CRD_COPY.read_text() == GENERATOR.CRD_SOURCE.read_text(), (
        "run: python charts/generate.py"
    )


@needs_crd
def test_default_install_renders_the_generated_crd() -> None:
    assert crd_available()
    [crd] = [o for o in render_objects({}) if o["kind"] == "CustomResourceDefinition"]
    generated = yaml.safe_load(GENERATOR.CRD_SOURCE.read_text())
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)
