"""Schema + CEL validation rejects what the API server would, with a message naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lpbyoc.spec import parse_spec
from lpbyoc.validation import SpecError, defaulted_spec, validate_capability, validation_errors

from .conftest import BYOC_BODY, EXAMPLES, load_example, with_changes

AIMODELS = with_changes(
    BYOC_BODY,
    {
        "spec.capability.integration": "aiModels",
        "spec.capability.pipeline": "image-to-image",
        "spec.orchestrator": {"name": "orch", "workloadRef": {"name": "go-livepeer"}},
    },
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    assert validation_errors(load_example(path)) == []


def test_valid_body_parses_to_the_model_with_defaults() -> None:
    spec = validate_capability(BYOC_BODY)
    assert spec == parse_spec(BYOC_BODY["spec"])
    assert (spec.replicas, spec.cache.size, spec.model.revision) == (1, "20Gi", "main")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"spec.model.revision": "not a ref"}, "spec.model.revision: Invalid value: 'not a ref'"),
        (
            {"spec.model.revision": "feature..x"},
            "model.revision must be a 40-hex commit SHA or a valid branch/tag name",
        ),
        ({"spec.model.revision": "release.lock"}, "model.revision must be a 40-hex commit SHA"),
        ({"spec.model.repo": "org/name/extra"}, "spec.model.repo: Invalid value: 'org/name/extra'"),
        ({"spec.model.repo": "-bad"}, "spec.model.repo: Invalid value"),
        ({"spec.replicas": -1}, "spec.replicas: -1 is less than the minimum of 0"),
        ({"spec.gpu.count": -1}, "spec.gpu.count: -1 is less than the minimum of 0"),
        ({"spec.capability.name": "Restyle_1"}, "spec.capability.name: Invalid value: 'Restyle_1'"),
        ({"spec.capability.pipeline": "text-to-3d"}, "spec.capability.pipeline: 'text-to-3d' is not one of"),
        ({"spec.capability.integration": "grpc"}, "spec.capability.integration: 'grpc' is not one of"),
        ({"spec.cache.size": "lots"}, "spec.cache.size: Invalid value: 'lots'"),
        ({"spec.cache.accessModes": []}, "spec.cache.accessModes: [] should be non-empty"),
        ({"spec.serving.port": 80}, "spec.serving.port: 80 is less than the minimum of 1024"),
        (
            {"spec.capability.integration": "aiModels", "spec.capability.pipeline": ...},
            "capability.pipeline is required when integration is aiModels",
        ),
        (
            {"spec.capability.integration": "aiModels", "spec.capability.pipeline": "llm"},
            "orchestrator.workloadRef is required when integration is aiModels",
        ),
        (
            {"spec.orchestrator.url": ...},
            "orchestrator.url and orchestrator.secretRef are required for byoc and liveRunner",
        ),
        ({"spec.orchestrator.secretRef": ...}, "orchestrator.url and orchestrator.secretRef are required"),
        ({"spec.orchestrator.url": "ftp://orch"}, "spec.orchestrator.url: Invalid value: 'ftp://orch'"),
        ({"spec.pricing.currency": "usd"}, "currency usd is only understood by liveRunner price_info"),
        ({"spec.pricing.currency": "btc"}, "spec.pricing.currency: 'btc' is not one of"),
        (
            {"spec.serving.triton": {"maxBatchSize": 0}},
            "dynamicBatching needs maxBatchSize > 0",
        ),
        ({"spec.model.variant": "FP16"}, "spec.model.variant: Invalid value: 'FP16'"),
        ({"spec.serving.task": "text-generation"}, "spec.serving.task: 'text-generation' is not one of"),
        (
            {"spec.serving.triton": {"modelFormat": "onnx"}},
            "spec.serving.triton.modelFormat: 'onnx' is not one of",
        ),
        (
            {
                "spec.capability.pipeline": "live-video-to-video",
                "spec.serving.triton": {"modelFormat": "diffusers"},
            },
            "a live-video-to-video capability serving a diffusers/transformers model needs serving.task",
        ),
        (
            {"spec.capability.pipeline": "live-video-to-video", "spec.serving.task": "audio-to-text"},
            "live-video-to-video runs frame by frame: serving.task must be",
        ),
        ({"spec.surprise": True}, 'unknown field "spec.surprise"'),
        ({"spec.gpu.count_": 1}, 'unknown field "spec.gpu.count_"'),
        ({"spec.model": ...}, "'model' is a required property"),
        ({"metadata.name": "Bad_Name"}, "metadata.name: Invalid value: 'Bad_Name'"),
        ({"metadata": ...}, "metadata.name: Required value"),
        ({"kind": "Deployment"}, "not a LivepeerCapability"),
    ],
)
def test_bad_specs_are_rejected_with_the_expected_message(changes: dict[str, Any], expected: str) -> None:
    errors = validation_errors(with_changes(BYOC_BODY, changes))
    assert any(expected in e for e in errors), errors
    with pytest.raises(SpecError) as raised:
        validate_capability(with_changes(BYOC_BODY, changes))
    assert expected in str(raised.value)


def test_every_problem_is_reported_not_only_the_first() -> None:
    errors = validation_errors(
        with_changes(BYOC_BODY, {"spec.replicas": -1, "spec.gpu.count": 99, "spec.x": 1})
    )
    assert len(errors) == 3, errors


@pytest.mark.parametrize(
    ("old_changes", "new_changes", "expected"),
    [
        ({}, {"spec.model.repo": "org/other"}, "model.repo is immutable"),
        (
            {"spec.cache.storageClassName": "fast"},
            {"spec.cache.storageClassName": "slow"},
            "storageClassName is immutable",
        ),
        (
            {"spec.cache.storageClassName": "fast"},
            {"spec.cache.storageClassName": ...},
            "storageClassName is immutable",
        ),
        (
            {"spec.cache.existingClaim": "weights"},
            {"spec.cache.existingClaim": "other"},
            "existingClaim is immutable",
        ),
    ],
)
def test_transition_rules_reject_changes_that_would_orphan_data(
    old_changes: dict[str, Any], new_changes: dict[str, Any], expected: str
) -> None:
    old = with_changes(BYOC_BODY, old_changes)
    new = with_changes(old, new_changes)
    assert validation_errors(new) == []  # a create is fine
    assert any(expected in e for e in validation_errors(new, old))


def test_allowed_updates_pass_transition_rules() -> None:
    old = with_changes(BYOC_BODY, {"spec.cache.storageClassName": "fast"})
    new = with_changes(
        old, {"spec.replicas": 3, "spec.model.revision": "v2", "spec.cache.retainOnDelete": True}
    )
    assert validation_errors(new, old) == []
    # Setting a class where none was set is allowed (the default class was unnamed).
    assert (
        validation_errors(with_changes(BYOC_BODY, {"spec.cache.storageClassName": "fast"}), BYOC_BODY) == []
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"spec.model.variant": "fp16", "spec.serving.triton": {"modelFormat": "diffusers"}},
        {"spec.serving.task": "depth-estimation", "spec.serving.triton": {"modelFormat": "transformers"}},
        {
            "spec.capability.pipeline": "live-video-to-video",
            "spec.serving.task": "depth-estimation",
            "spec.serving.triton": {"modelFormat": "transformers"},
        },
        # Auto format: the operator decides from the detected snapshot (the CEL rule cannot know it).
        {"spec.capability.pipeline": "live-video-to-video"},
        {
            "spec.capability.pipeline": "live-video-to-video",
            "spec.serving.triton": {"modelFormat": "torchscript"},
        },
    ],
)
def test_model_format_task_and_variant_combinations_that_are_valid(changes: dict[str, Any]) -> None:
    assert validation_errors(with_changes(BYOC_BODY, changes)) == []


def test_aimodels_body_is_valid_and_usd_allowed_for_live_runner() -> None:
    assert validation_errors(AIMODELS) == []
    live = with_changes(
        BYOC_BODY, {"spec.capability.integration": "liveRunner", "spec.pricing.currency": "usd"}
    )
    assert validation_errors(live) == []


def test_integer_quantities_are_accepted_as_kubernetes_does() -> None:
    body = with_changes(
        BYOC_BODY, {"spec.cache.size": 1073741824, "spec.resources": {"requests": {"cpu": 2}}}
    )
    assert validation_errors(body) == []
    spec = defaulted_spec(body["spec"])
    assert spec["cache"]["size"] == "1073741824"
    assert spec["resources"]["requests"] == {"cpu": "2"}
