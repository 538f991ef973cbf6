"""Condition, phase and status policies: table-driven over observed states."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from lpbyoc import conditions
from lpbyoc.conditions import READY, REGISTERED, SPEC_VALID, WEIGHTS_CACHED, WORKER_AVAILABLE
from lpbyoc.policy import (
    DeploymentObserved,
    Observed,
    SchedulingProblem,
    compute_conditions,
    compute_phase,
    desired_status,
    progress_text,
)
from lpbyoc.view import ConditionResult

CACHED = Observed(
    prefetch_state="succeeded", prefetch_result={"result": "Succeeded", "sha": "abc", "files": 3, "bytes": 10}
)
REGISTERED_OK = ConditionResult("True", "Registered", "registered with capacity 2")
SERVING = replace(
    CACHED, desired_replicas=2, deployment=DeploymentObserved(2, 2, 2, 2), registered=REGISTERED_OK
)
GPU_SHORT = SchedulingProblem("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
NO_NODE = SchedulingProblem(
    "Unschedulable", "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
)
OTHER = SchedulingProblem("Unschedulable", "0/3 nodes are available: 3 Insufficient memory.")

# (observed, {condition: (status, reason)}, phase)
CASES: dict[str, tuple[Observed, dict[str, tuple[str, str]], str]] = {
    "invalid-spec": (
        Observed(spec_error="spec.replicas: -1 is less than the minimum of 0"),
        {
            SPEC_VALID: ("False", "InvalidSpec"),
            WEIGHTS_CACHED: ("False", "SpecInvalid"),
            READY: ("False", "InvalidSpec"),
        },
        "Failed",
    ),
    "missing-secret": (
        Observed(missing_secrets=("orch-secret (orchestrator.secretRef)",)),
        {SPEC_VALID: ("False", "SecretNotFound"), READY: ("False", "SecretNotFound")},
        "Failed",
    ),
    "storage-class-missing": (
        Observed(storage_class_missing="fast"),
        {SPEC_VALID: ("False", "StorageClassNotFound")},
        "Failed",
    ),
    "access-mode": (
        Observed(access_mode_unsupported="ReadWriteMany is not supported by class standard"),
        {SPEC_VALID: ("False", "AccessModeUnsupported")},
        "Failed",
    ),
    "nothing-yet": (
        Observed(),
        {
            SPEC_VALID: ("True", "Valid"),
            WEIGHTS_CACHED: ("False", "PrefetchPending"),
            WORKER_AVAILABLE: ("False", "WaitingForWeights"),
            REGISTERED: ("False", "WaitingForWorker"),
            READY: ("False", "PrefetchPending"),
        },
        "Pending",
    ),
    "downloading": (
        Observed(
            prefetch_state="running",
            prefetch_progress={"state": "downloading", "bytesDone": 42, "bytesTotal": 100},
        ),
        {WEIGHTS_CACHED: ("False", "Downloading"), READY: ("False", "Downloading")},
        "Downloading",
    ),
    "download-failed-permanently": (
        Observed(
            prefetch_state="failed",
            prefetch_result={"result": "Failed", "reason": "RepoNotFound", "message": "no such repo"},
        ),
        {WEIGHTS_CACHED: ("False", "RepoNotFound"), WORKER_AVAILABLE: ("False", "WaitingForWeights")},
        "Failed",
    ),
    "download-failed-transiently": (
        Observed(
            prefetch_state="failed",
            prefetch_result={"result": "Failed", "reason": "NetworkError", "message": "reset"},
        ),
        {WEIGHTS_CACHED: ("False", "NetworkError")},
        "Downloading",
    ),
    "download-failed-unknown-reason": (
        Observed(prefetch_state="failed", prefetch_result=None),
        {WEIGHTS_CACHED: ("False", "DownloadFailed")},
        "Failed",
    ),
    "volume-lost": (
        Observed(pvc_phase="Lost", prefetch_state="running"),
        {WEIGHTS_CACHED: ("False", "VolumeLost")},
        "Failed",
    ),
    "cached-no-deployment": (
        CACHED,
        {
            WEIGHTS_CACHED: ("True", "Cached"),
            WORKER_AVAILABLE: ("False", "Progressing"),
            READY: ("False", "Progressing"),
        },
        "Deploying",
    ),
    "loading-model": (
        replace(CACHED, deployment=DeploymentObserved(1, 0, 0, 1)),
        {WORKER_AVAILABLE: ("False", "Progressing")},
        "Deploying",
    ),
    "waiting-for-gpu": (
        replace(CACHED, deployment=DeploymentObserved(1, 0, 0, 1), unschedulable=GPU_SHORT),
        {WORKER_AVAILABLE: ("False", "WaitingForGPU"), READY: ("False", "WaitingForGPU")},
        "Deploying",
    ),
    "no-node-matches-product": (
        replace(CACHED, deployment=DeploymentObserved(1, 0, 0, 1), unschedulable=NO_NODE),
        {WORKER_AVAILABLE: ("False", "WaitingForGPU")},
        "Deploying",
    ),
    "unschedulable-for-memory": (
        replace(CACHED, deployment=DeploymentObserved(1, 0, 0, 1), unschedulable=OTHER),
        {WORKER_AVAILABLE: ("False", "Unschedulable")},
        "Deploying",
    ),
    "available-registration-pending": (
        replace(SERVING, registered=None),
        {
            WORKER_AVAILABLE: ("True", "Available"),
            REGISTERED: ("Unknown", "RegistrationPending"),
            READY: ("False", "RegistrationPending"),
        },
        "Deploying",
    ),
    "registration-failed": (
        replace(
            SERVING, registered=ConditionResult("False", "OrchestratorUnreachable", "connection refused")
        ),
        {REGISTERED: ("False", "OrchestratorUnreachable"), READY: ("False", "OrchestratorUnreachable")},
        "Degraded",
    ),
    "ready": (
        SERVING,
        {
            SPEC_VALID: ("True", "Valid"),
            WEIGHTS_CACHED: ("True", "Cached"),
            WORKER_AVAILABLE: ("True", "Available"),
            REGISTERED: ("True", "Registered"),
            READY: ("True", "Ready"),
        },
        "Ready",
    ),
    "one-of-two-replicas-lost": (
        replace(SERVING, deployment=DeploymentObserved(2, 1, 1, 2)),
        {WORKER_AVAILABLE: ("True", "PartiallyAvailable"), READY: ("True", "Ready")},
        "Degraded",
    ),
    "second-replica-waits-for-gpu": (
        replace(SERVING, deployment=DeploymentObserved(2, 1, 1, 2), unschedulable=GPU_SHORT),
        {WORKER_AVAILABLE: ("True", "WaitingForGPU")},
        "Degraded",
    ),
    "model-incompatible": (
        replace(
            CACHED,
            model_problem="transformers WhisperForConditionalGeneration cannot serve image-to-image",
        ),
        {
            WEIGHTS_CACHED: ("True", "Cached"),
            WORKER_AVAILABLE: ("False", "ModelIncompatible"),
            READY: ("False", "ModelIncompatible"),
        },
        "Failed",
    ),
    "scaled-to-zero": (
        replace(CACHED, desired_replicas=0, deployment=DeploymentObserved(0, 0, 0, 0)),
        {WORKER_AVAILABLE: ("False", "ScaledToZero"), READY: ("False", "ScaledToZero")},
        "Pending",
    ),
}


@pytest.mark.parametrize(("observed", "expected", "phase"), CASES.values(), ids=CASES.keys())
def test_conditions_and_phase(observed: Observed, expected: dict[str, tuple[str, str]], phase: str) -> None:
    conds = compute_conditions(observed)
    assert list(conds) == list(conditions.CONDITION_TYPES)
    assert {t: (conds[t].status, conds[t].reason) for t in expected} == expected
    assert all(c.message for c in conds.values()), conds
    assert compute_phase(conds, observed) == phase


def test_model_status_and_incompatibility_message() -> None:
    model = {"format": "diffusers", "className": "StableDiffusionPipeline", "task": "image-to-image"}
    observed = replace(CACHED, model=model, model_problem="diffusers StableDiffusionPipeline cannot serve x")
    conds = compute_conditions(observed)
    assert conds[READY].message == "WorkerAvailable: diffusers StableDiffusionPipeline cannot serve x"
    status = desired_status(
        observed, [], observed_generation=1, endpoint="", selector="", resolved_revision="abc", phase="Failed"
    )
    assert status["model"] == model
    assert "model" not in desired_status(
        CACHED,
        [],
        observed_generation=1,
        endpoint="",
        selector="",
        resolved_revision="abc",
        phase="Deploying",
    )


def test_messages_say_what_is_happening() -> None:
    conds = compute_conditions(
        Observed(
            prefetch_state="running",
            prefetch_progress={
                "state": "downloading",
                "bytesDone": 512 * 1024**2,
                "bytesTotal": 2 * 1024**3,
                "rateBytesPerSecond": 50 * 1024**2,
                "etaSeconds": 30.4,
            },
        )
    )
    assert conds[WEIGHTS_CACHED].message == "downloading 25% (512.0 MiB of 2.0 GiB, 50.0 MiB/s, ETA 30s)"
    gpu = compute_conditions(CASES["waiting-for-gpu"][0])[WORKER_AVAILABLE].message
    assert gpu.startswith("0/1 replicas available; 0/3 nodes are available: 3 Insufficient nvidia.com/gpu")
    assert compute_conditions(CASES["missing-secret"][0])[SPEC_VALID].message == (
        "Secret not found: orch-secret (orchestrator.secretRef)"
    )
    assert (
        "no such repo" in compute_conditions(CASES["download-failed-permanently"][0])[WEIGHTS_CACHED].message
    )


def test_mig_resource_shortage_is_waiting_for_gpu() -> None:
    problem = SchedulingProblem(
        "Unschedulable", "0/2 nodes are available: 2 Insufficient nvidia.com/mig-1g.10gb."
    )
    observed = replace(
        CACHED,
        deployment=DeploymentObserved(1, 0, 0, 1),
        unschedulable=problem,
        gpu_resource_name="nvidia.com/mig-1g.10gb",
    )
    assert compute_conditions(observed)[WORKER_AVAILABLE].reason == "WaitingForGPU"


@pytest.mark.parametrize(
    ("reason", "permanent"),
    [("RepoNotFound", True), ("Unauthorized", True), ("NetworkError", False), ("DownloadStalled", False)],
)
def test_permanent_prefetch_failures(reason: str, permanent: bool) -> None:
    """Only a spec or Hub change fixes a permanent failure (Failed); the rest are retried (Downloading)."""
    observed = Observed(prefetch_state="failed", prefetch_result={"result": "Failed", "reason": reason})
    phase = compute_phase(compute_conditions(observed), observed)
    assert phase == ("Failed" if permanent else "Downloading")


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        (None, ""),
        ({"state": "resolving"}, ""),
        ({"bytesDone": 0, "bytesTotal": 0}, ""),
        ({"bytesDone": 42, "bytesTotal": 100}, "42%"),
        ({"bytesDone": 999, "bytesTotal": 1000}, "99%"),
        ({"bytesDone": 5, "bytesTotal": 4}, "100%"),
        ({"state": "done", "bytesDone": 1, "bytesTotal": 2}, "100%"),
    ],
)
def test_progress_text(progress: dict[str, Any] | None, text: str) -> None:
    assert progress_text(progress) == text


T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def test_merge_keeps_transition_time_unless_status_flips() -> None:
    first = conditions.merge(None, {READY: ConditionResult("False", "Downloading", "10%")}, 1, T0)
    assert first == [
        {
            "type": READY,
            "status": "False",
            "reason": "Downloading",
            "message": "10%",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        }
    ]
    same_status = conditions.merge(first, {READY: ConditionResult("False", "Downloading", "50%")}, 2, T1)
    assert same_status[0]["lastTransitionTime"] == T0
    assert (same_status[0]["message"], same_status[0]["observedGeneration"]) == ("50%", 2)
    flipped = conditions.merge(same_status, {READY: ConditionResult("True", "Ready", "")}, 2, T1)
    assert flipped[0]["lastTransitionTime"] == T1


def test_merge_orders_types_and_keeps_foreign_conditions() -> None:
    old = [{"type": "Custom", "status": "True", "reason": "X", "message": "", "lastTransitionTime": T0}]
    new = compute_conditions(Observed())
    merged = conditions.merge(old, dict(reversed(list(new.items()))), 3, T1)
    assert [c["type"] for c in merged] == [*conditions.CONDITION_TYPES, "Custom"]
    assert merged[-1] == old[0]


def _status(observed: Observed, old_conditions: list[dict[str, Any]] | None, now: str) -> dict[str, Any]:
    conds = compute_conditions(observed)
    return desired_status(
        observed,
        conditions.merge(old_conditions, conds, 1, now),
        observed_generation=1,
        endpoint="http://lpbyoc-restyle.ml.svc.cluster.local:8000",
        selector="app.kubernetes.io/component=worker,livepeer.org/capability=restyle",
        resolved_revision="abc",
        phase=compute_phase(conds, observed),
    )


def test_idle_resync_writes_nothing() -> None:
    first = _status(SERVING, None, T0)
    again = _status(SERVING, first["conditions"], T1)  # later clock, same world
    assert conditions.status_patch(first, again) is None


def test_status_patch_is_a_minimal_merge_patch() -> None:
    downloading = Observed(
        prefetch_state="running",
        prefetch_progress={"state": "downloading", "bytesDone": 1, "bytesTotal": 4, "filesDone": 0},
    )
    before = _status(downloading, None, T0)
    assert before["progress"] == "25%" and before["download"] == {
        "bytesDone": 1,
        "bytesTotal": 4,
        "filesDone": 0,
    }
    after = _status(
        replace(downloading, prefetch_progress={"state": "downloading", "bytesDone": 3, "bytesTotal": 4}),
        before["conditions"],
        T1,
    )
    patch = conditions.status_patch(before, after)
    assert patch is not None
    assert set(patch) == {"progress", "download", "conditions"}
    assert patch["download"] == {"bytesDone": 3, "filesDone": None}
    done = _status(CACHED, after["conditions"], T1)
    assert conditions.status_patch(after, done)["download"] is None  # removed once cached


def test_status_patch_table() -> None:
    assert conditions.status_patch(None, {"phase": "Pending"}) == {"phase": "Pending"}
    assert conditions.status_patch({"phase": "Pending"}, {"phase": "Pending"}) is None
    assert conditions.status_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == {"a": {"c": 3}}
    assert conditions.status_patch({"a": [1, 2]}, {"a": [1]}) == {"a": [1]}
    assert conditions.status_patch({"a": 1, "b": 2}, {"a": 1}) == {"b": None}
