"""Pure policies: what the observed world means for the status of one capability.

The reconcile gathers facts with side effects into an `Observed`; these functions turn
them into conditions (type -> reason + message), a phase and the rest of `.status`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lpbyoc.conditions import READY, REGISTERED, SPEC_VALID, WEIGHTS_CACHED, WORKER_AVAILABLE
from lpbyoc.view import ConditionResult, ConditionStatus

PrefetchState = Literal["absent", "running", "succeeded", "failed"]

# Failure reasons the prefetcher writes to its termination log (docs/architecture.md).
PREFETCH_FAILURE_REASONS = frozenset(
    {
        "Unauthorized",
        "RepoNotFound",
        "RevisionNotFound",
        "EntryNotFound",
        "DownloadStalled",
        "DiskFull",
        "ChecksumMismatch",
        "NetworkError",
        "InternalError",
    }
)
# Failures a retry cannot fix: the spec (or the Hub) must change first.
PERMANENT_PREFETCH_REASONS = frozenset({"Unauthorized", "RepoNotFound", "RevisionNotFound", "EntryNotFound"})

MODEL_INCOMPATIBLE = "ModelIncompatible"

PHASES = ("Pending", "Downloading", "Deploying", "Ready", "Degraded", "Failed")


@dataclass(frozen=True)
class DeploymentObserved:
    replicas: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0


@dataclass(frozen=True)
class SchedulingProblem:
    """A worker pod's `PodScheduled=False` condition (reason Unschedulable) or FailedScheduling event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    desired_replicas: int = 1
    gpu_resource_name: str = "nvidia.com/gpu"
    spec_error: str | None = None
    missing_secrets: tuple[str, ...] = ()  # "name (field)" of each Secret that does not exist
    storage_class_missing: str | None = None  # the class name, when it does not exist
    access_mode_unsupported: str | None = None  # why the claim's access modes cannot work
    pvc_phase: str | None = None  # Pending | Bound | Lost; None when absent
    prefetch_state: PrefetchState = "absent"
    prefetch_result: Mapping[str, Any] | None = None  # the termination-log JSON
    prefetch_progress: Mapping[str, Any] | None = None  # GET /progress JSON
    deployment: DeploymentObserved | None = None
    unschedulable: SchedulingProblem | None = None
    registered: ConditionResult | None = None  # from lpbyoc.orchestrator
    model: Mapping[str, Any] | None = None  # `.status.model` (lpbyoc.compat.judge)
    model_problem: str | None = None  # why the cached model cannot serve the capability


def is_gpu_shortage(problem: SchedulingProblem, gpu_resource_name: str = "nvidia.com/gpu") -> bool:
    message = problem.message
    return (
        f"Insufficient {gpu_resource_name}" in message
        or "didn't match Pod's node affinity/selector" in message
        or "didn't match node selector" in message
        or "untolerated taint" in message
    )


def _spec_valid(obs: Observed) -> ConditionResult:
    if obs.spec_error:
        return ConditionResult("False", "InvalidSpec", obs.spec_error)
    if obs.missing_secrets:
        return ConditionResult(
            "False", "SecretNotFound", "Secret not found: " + ", ".join(obs.missing_secrets)
        )
    if obs.storage_class_missing:
        return ConditionResult(
            "False", "StorageClassNotFound", f"StorageClass {obs.storage_class_missing!r} does not exist"
        )
    if obs.access_mode_unsupported:
        return ConditionResult("False", "AccessModeUnsupported", obs.access_mode_unsupported)
    return ConditionResult("True", "Valid", "the spec is valid and its references exist")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


def progress_text(progress: Mapping[str, Any] | None) -> str:
    """Percentage of bytes downloaded, floored ("42%"); "" while the total is unknown."""
    if not progress:
        return ""
    if progress.get("state") == "done":
        return "100%"
    total = progress.get("bytesTotal") or 0
    done = progress.get("bytesDone") or 0
    if not isinstance(total, int | float) or total <= 0:
        return ""
    return f"{min(100, int(100 * done // total))}%"


def _download_message(progress: Mapping[str, Any] | None) -> str:
    if not progress:
        return "prefetch Job running"
    state = progress.get("state", "downloading")
    if state == "resolving":
        return "resolving the revision on the Hub"
    text = f"{state} {progress_text(progress) or '?%'}"
    total = progress.get("bytesTotal")
    if total:
        text += f" ({_human_bytes(progress.get('bytesDone') or 0)} of {_human_bytes(total)}"
        if progress.get("rateBytesPerSecond"):
            text += f", {_human_bytes(progress['rateBytesPerSecond'])}/s"
        if progress.get("etaSeconds") is not None:
            text += f", ETA {int(progress['etaSeconds'])}s"
        text += ")"
    return text


def _weights_cached(obs: Observed, spec_valid: ConditionResult) -> ConditionResult:
    if spec_valid.status != "True":
        return ConditionResult("False", "SpecInvalid", "waiting for a valid spec")
    if obs.prefetch_state == "succeeded":
        result = obs.prefetch_result or {}
        sha = result.get("sha") or "?"
        return ConditionResult(
            "True",
            "Cached",
            f"revision {sha} cached ({result.get('files', '?')} files, {result.get('bytes', '?')} bytes)",
        )
    if obs.prefetch_state == "failed":
        result = obs.prefetch_result or {}
        reason = str(result.get("reason") or "")
        reason = reason if reason in PREFETCH_FAILURE_REASONS else "DownloadFailed"
        return ConditionResult("False", reason, str(result.get("message") or "the prefetch Job failed"))
    if obs.pvc_phase == "Lost":
        return ConditionResult("False", "VolumeLost", "the weights PersistentVolumeClaim lost its volume")
    if obs.prefetch_state == "running":
        return ConditionResult("False", "Downloading", _download_message(obs.prefetch_progress))
    return ConditionResult("False", "PrefetchPending", "the prefetch Job has not started yet")


def _worker_available(obs: Observed, weights: ConditionResult) -> ConditionResult:
    if weights.status != "True":
        return ConditionResult("False", "WaitingForWeights", "the worker starts once the weights are cached")
    if obs.model_problem:
        # Decided before the Deployment exists: no pod asks for a GPU it could never use.
        return ConditionResult("False", MODEL_INCOMPATIBLE, obs.model_problem)
    if obs.desired_replicas == 0:
        return ConditionResult("False", "ScaledToZero", "spec.replicas is 0")
    wanted = obs.desired_replicas
    dep = obs.deployment
    available = dep.available if dep else 0
    counts = f"{available}/{wanted} replicas available"
    if obs.unschedulable is not None and available < wanted:
        problem = obs.unschedulable
        reason = "WaitingForGPU" if is_gpu_shortage(problem, obs.gpu_resource_name) else "Unschedulable"
        status: ConditionStatus = "True" if available > 0 else "False"
        return ConditionResult(status, reason, f"{counts}; {problem.message}")
    if dep is None:
        return ConditionResult("False", "Progressing", "creating the worker Deployment")
    if available == 0:
        return ConditionResult("False", "Progressing", f"{counts}; loading the model")
    if available < wanted or dep.updated < wanted:
        return ConditionResult("True", "PartiallyAvailable", counts)
    return ConditionResult("True", "Available", counts)


def _registered(obs: Observed, worker: ConditionResult) -> ConditionResult:
    if obs.registered is not None:
        return obs.registered
    if worker.status != "True":
        return ConditionResult("False", "WaitingForWorker", "registration waits for an available worker")
    return ConditionResult(
        "Unknown", "RegistrationPending", "registration with the orchestrator not yet confirmed"
    )


def _ready(conds: Mapping[str, ConditionResult]) -> ConditionResult:
    for cond_type in (SPEC_VALID, WEIGHTS_CACHED, WORKER_AVAILABLE, REGISTERED):
        cond = conds[cond_type]
        if cond.status != "True":
            return ConditionResult("False", cond.reason, f"{cond_type}: {cond.message}")
    return ConditionResult("True", "Ready", conds[WORKER_AVAILABLE].message)


def compute_conditions(obs: Observed) -> dict[str, ConditionResult]:
    spec_valid = _spec_valid(obs)
    weights = _weights_cached(obs, spec_valid)
    worker = _worker_available(obs, weights)
    conds = {
        SPEC_VALID: spec_valid,
        WEIGHTS_CACHED: weights,
        WORKER_AVAILABLE: worker,
        REGISTERED: _registered(obs, worker),
    }
    conds[READY] = _ready(conds)
    return conds


def compute_phase(conds: Mapping[str, ConditionResult], obs: Observed) -> str:
    """One word for `kubectl get`: the conditions say why.

    A transient prefetch failure (network, stall, disk) stays Downloading: the operator
    retries it. A failure that only a spec or Hub change can fix is Failed.
    """
    weights_reason = conds[WEIGHTS_CACHED].reason
    if conds[SPEC_VALID].status != "True" or weights_reason == "VolumeLost":
        return "Failed"
    if obs.prefetch_state == "failed":
        transient = weights_reason in PREFETCH_FAILURE_REASONS - PERMANENT_PREFETCH_REASONS
        return "Downloading" if transient else "Failed"
    if conds[WORKER_AVAILABLE].reason == MODEL_INCOMPATIBLE:
        return "Failed"  # only a spec change (pipeline, serving.task, model) fixes it
    if conds[READY].status == "True":
        return "Degraded" if conds[WORKER_AVAILABLE].reason != "Available" else "Ready"
    if conds[WEIGHTS_CACHED].status != "True":
        return "Downloading" if obs.prefetch_state == "running" else "Pending"
    worker = conds[WORKER_AVAILABLE]
    if worker.reason == "ScaledToZero":
        return "Pending"
    if worker.status == "True" and conds[REGISTERED].status == "False":
        return "Degraded"  # serving, but the orchestrator does not route to it
    return "Deploying"


def download_status(progress: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`.status.download` from the prefetcher's progress JSON (only the schema's keys)."""
    if not progress:
        return None
    keys = ("bytesDone", "bytesTotal", "filesDone", "filesTotal", "rateBytesPerSecond", "etaSeconds")
    return {k: progress[k] for k in keys if progress.get(k) is not None}


def desired_status(
    obs: Observed,
    conditions: Sequence[Mapping[str, Any]],
    *,
    observed_generation: int,
    endpoint: str,
    selector: str,
    resolved_revision: str | None,
    phase: str,
) -> dict[str, Any]:
    """The whole `.status` (no None values, so a merge patch never deletes by accident)."""
    dep = obs.deployment
    status: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": observed_generation,
        "conditions": [dict(c) for c in conditions],
        "replicas": dep.replicas if dep else 0,
        "readyReplicas": dep.ready if dep else 0,
        "selector": selector,
        "endpoint": endpoint,
    }
    if resolved_revision:
        status["resolvedRevision"] = resolved_revision
    if obs.model:
        status["model"] = dict(obs.model)
    if obs.prefetch_state == "running":
        status["progress"] = progress_text(obs.prefetch_progress) or "0%"
        download = download_status(obs.prefetch_progress)
        if download:
            status["download"] = download
    elif obs.prefetch_state == "succeeded":
        status["progress"] = "100%"
    return status
