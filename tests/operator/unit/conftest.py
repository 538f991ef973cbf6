"""Shared builders of LivepeerCapability bodies for the operator unit tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

BYOC_BODY: dict[str, Any] = {
    "apiVersion": "livepeer.org/v1alpha1",
    "kind": "LivepeerCapability",
    "metadata": {"name": "restyle", "namespace": "ml", "uid": "uid-restyle"},
    "spec": {
        "capability": {"name": "restyle"},
        "model": {"repo": "org/restyle"},
        "orchestrator": {
            "name": "orch",
            "url": "https://orch:8935",
            "secretRef": {"name": "orch-secret", "key": "secret"},
        },
    },
}


def with_changes(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `body` with dotted paths set (value `...` deletes the key)."""
    out = copy.deepcopy(body)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out


def load_example(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def byoc_body() -> dict[str, Any]:
    return copy.deepcopy(BYOC_BODY)
