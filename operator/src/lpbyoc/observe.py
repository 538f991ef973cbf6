"""What the operator sees of its children, reduced to the facts the policies need.

The kopf indexes store compact records (`ChildRecord`, `PodRecord`) instead of whole bodies,
which keeps the memory per watched capability small; the functions here turn those records
into the pieces of `lpbyoc.policy.Observed`. Everything is pure except `fetch_progress`,
the one HTTP call to a running prefetch pod.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from lpbyoc.policy import DeploymentObserved, PrefetchState, SchedulingProblem
from lpbyoc.spec import API_VERSION, KIND

logger = logging.getLogger(__name__)

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
ATTEMPT_ANNOTATION = "livepeer.org/prefetch-attempt"


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or () if isinstance(c, Mapping)}


def owner_names(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the capabilities listed in ownerReferences."""
    return tuple(
        sorted(
            str(ref.get("name"))
            for ref in metadata.get("ownerReferences") or ()
            if ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).split("/")[0] == API_VERSION.split("/")[0]
        )
    )


@dataclass(frozen=True)
class ChildRecord:
    """A managed PVC, Job, Deployment or Service as the index keeps it: the body as compact JSON,
    zlib-compressed (a worker Deployment is ~4.7 KB of JSON, ~1.5 KB compressed, and the index
    keeps four children per capability; the reconcile decompresses the few it reads)."""

    kind: str
    namespace: str
    name: str
    owners: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    body_z: bytes

    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(zlib.decompress(self.body_z))
        return result

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


def child_record(body: Mapping[str, Any]) -> ChildRecord:
    meta = body.get("metadata") or {}
    trimmed = {k: v for k, v in body.items() if k != "metadata"}
    trimmed["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return ChildRecord(
        kind=str(body.get("kind")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name")),
        owners=owner_names(meta),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        body_z=zlib.compress(json.dumps(trimmed, separators=(",", ":"), sort_keys=True).encode(), 1),
    )


@dataclass(frozen=True)
class PodRecord:
    """The facts about one pod (prefetch or worker) that status depends on."""

    namespace: str
    name: str
    phase: str
    ip: str | None
    ready: bool
    unschedulable: SchedulingProblem | None
    terminated_message: str | None
    job_name: str | None
    capability: str | None


def pod_record(body: Mapping[str, Any]) -> PodRecord:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    conds = _conditions(status)
    scheduled = conds.get("PodScheduled")
    unschedulable = None
    if scheduled is not None and scheduled.get("status") == "False":
        unschedulable = SchedulingProblem(
            reason=str(scheduled.get("reason") or "Unschedulable"),
            message=str(scheduled.get("message") or ""),
        )
    message = None
    for container in status.get("containerStatuses") or ():
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            message = str(terminated["message"])
    job_name = next((str(labels[k]) for k in JOB_NAME_LABELS if labels.get(k)), None)
    return PodRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name")),
        phase=str(status.get("phase") or "Pending"),
        ip=status.get("podIP") or None,
        ready=(conds.get("Ready") or {}).get("status") == "True",
        unschedulable=unschedulable,
        terminated_message=message,
        job_name=job_name,
        capability=labels.get("livepeer.org/capability"),
    )


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The prefetcher's termination-log JSON (its last JSON line), or None."""
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "result" in value:
            return value
    return None


def job_state(job: Mapping[str, Any] | None) -> PrefetchState:
    if job is None:
        return "absent"
    status = job.get("status") or {}
    conds = _conditions(status)
    if (conds.get("Complete") or {}).get("status") == "True" or (status.get("succeeded") or 0) > 0:
        return "succeeded"
    if (conds.get("Failed") or {}).get("status") == "True":
        return "failed"
    return "running"


@dataclass(frozen=True)
class PrefetchObserved:
    state: PrefetchState
    result: dict[str, Any] | None
    running_pod_ip: str | None
    attempt: int


def observe_prefetch(job: Mapping[str, Any] | None, pods: Iterable[PodRecord]) -> PrefetchObserved:
    """The Job's state, the result its pods wrote, and the IP of the pod to poll for progress."""
    state = job_state(job)
    ordered = sorted(pods, key=lambda p: p.name)
    results = [r for r in (parse_result(p.terminated_message) for p in ordered) if r is not None]
    result: dict[str, Any] | None = None
    if state == "succeeded":
        result = next((r for r in reversed(results) if r.get("result") == "Succeeded"), None)
    elif state == "failed":
        result = next(
            (r for r in reversed(results) if r.get("result") == "Failed"), results[-1] if results else None
        )
    running_ip = (
        next((p.ip for p in ordered if p.phase == "Running" and p.ip), None) if state == "running" else None
    )
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    try:
        attempt = int(annotations.get(ATTEMPT_ANNOTATION, 1))
    except ValueError:
        attempt = 1
    return PrefetchObserved(state=state, result=result, running_pod_ip=running_ip, attempt=attempt)


def observe_deployment(deployment: Mapping[str, Any] | None) -> DeploymentObserved | None:
    if deployment is None:
        return None
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    return DeploymentObserved(
        replicas=int(status.get("replicas") or spec.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
    )


def observe_workers(pods: Sequence[PodRecord]) -> tuple[SchedulingProblem | None, tuple[str, ...]]:
    """The first scheduling problem among the worker pods, and the IPs of the ready ones."""
    ordered = sorted(pods, key=lambda p: p.name)
    problem = next((p.unschedulable for p in ordered if p.unschedulable is not None), None)
    ready_ips = tuple(p.ip for p in ordered if p.ready and p.ip)
    return problem, ready_ips


def pvc_phase(pvc: Mapping[str, Any] | None) -> str | None:
    if pvc is None:
        return None
    return str((pvc.get("status") or {}).get("phase") or "Pending")


async def fetch_progress(ip: str, port: int, timeout_seconds: float) -> dict[str, Any] | None:
    """GET http://<ip>:<port>/progress of a running prefetch pod; None when it does not answer."""
    url = f"http://{ip}:{port}/progress"
    try:
        # Plain HTTP to a pod IP: verify=False spares loading the CA bundle into a TLS context per poll.
        async with httpx.AsyncClient(timeout=timeout_seconds, verify=False) as client:
            response = await client.get(url)
            response.raise_for_status()
            value = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        logger.debug("no prefetch progress from %s: %s", url, exc)
        return None
    return value if isinstance(value, dict) else None


RETRY_ANNOTATION = "livepeer.org/prefetch-retry"


@dataclass(frozen=True)
class CapabilityRecord:
    """A LivepeerCapability as the index keeps it."""

    namespace: str
    name: str
    uid: str
    generation: int
    creation_timestamp: str
    deleting: bool
    spec_json: str
    status_json: str
    retry_json: str | None  # the prefetch retry record (annotation), when a prefetch failed

    def spec(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.spec_json)
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.status_json)
        return result

    def retry(self) -> dict[str, Any] | None:
        if not self.retry_json:
            return None
        try:
            value = json.loads(self.retry_json)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def reference(self) -> dict[str, Any]:
        """Enough of the object for kopf.event()."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


def capability_record(body: Mapping[str, Any]) -> CapabilityRecord:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return CapabilityRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name")),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 1),
        creation_timestamp=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        spec_json=json.dumps(body.get("spec") or {}, separators=(",", ":"), sort_keys=True),
        status_json=json.dumps(body.get("status") or {}, separators=(",", ":"), sort_keys=True),
        retry_json=annotations.get(RETRY_ANNOTATION),
    )


@dataclass(frozen=True)
class CacheUser:
    """A capability using a weights claim (the claim's owners and retain flag come from these)."""

    name: str
    uid: str
    retain: bool
    deleting: bool
    job: str = ""  # its prefetch Job: users of one claim may want different revisions
    size: str = ""  # the cache size it asks for: a shared claim is sized for the largest
