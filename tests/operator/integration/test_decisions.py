"""The pure decisions of the reconcile and its observers (no API, no kopf): what counts as a
change, how a failed prefetch is retried, what the watched objects mean, which Events to post."""

from __future__ import annotations

import json

import pytest
from lpbyoc.kube import needs_update
from lpbyoc.observe import ATTEMPT_ANNOTATION, PodRecord, observe_prefetch, parse_result, pod_record
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.policy import SchedulingProblem
from lpbyoc.reconcile import (
    events_for,
    next_attempt,
    plan_prefetch_retry,
    resolved_revision,
    retry_delay,
    secret_refs,
)
from lpbyoc.spec import parse_spec

TUNING = RuntimeTuning(retry_base=10, retry_cap=60)
SHA = "a" * 40
DESIRED = {
    "metadata": {"name": "x", "labels": {"a": "1"}},
    "spec": {"replicas": 2, "containers": [{"name": "c", "image": "i"}]},
}


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (None, True),
        (DESIRED, False),
        # The server adds defaults and status: still no update.
        (
            {
                "metadata": {"name": "x", "uid": "u", "labels": {"a": "1", "b": "2"}},
                "spec": {
                    "replicas": 2,
                    "containers": [{"name": "c", "image": "i", "imagePullPolicy": "IfNotPresent"}],
                },
                "status": {"readyReplicas": 2},
            },
            False,
        ),
        (
            {
                "metadata": {"name": "x", "labels": {"a": "1"}},
                "spec": {"replicas": 3, "containers": [{"name": "c", "image": "i"}]},
            },
            True,
        ),
        (
            {
                "metadata": {"name": "x", "labels": {}},
                "spec": {"replicas": 2, "containers": [{"name": "c", "image": "i"}]},
            },
            True,
        ),
        ({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 2, "containers": []}}, True),
        (
            {
                "metadata": {"name": "x", "labels": {"a": "1"}},
                "spec": {"replicas": 2, "containers": [{"name": "c", "image": "j"}]},
            },
            True,
        ),
    ],
    ids=[
        "unobserved",
        "same",
        "server-defaults",
        "scalar-changed",
        "label-missing",
        "list-shorter",
        "list-item-changed",
    ],
)
def test_needs_update(observed: dict | None, expected: bool) -> None:
    assert needs_update(DESIRED, observed) is expected


def prefetch(state: str, attempt: int = 1):
    job = {"metadata": {"annotations": {ATTEMPT_ANNOTATION: str(attempt)}}, "status": {}}
    if state == "failed":
        job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    elif state == "succeeded":
        job["status"] = {"succeeded": 1}
    return observe_prefetch(job, [])


def test_first_failure_is_recorded_with_its_backoff() -> None:
    plan = plan_prefetch_retry("job-1", prefetch("failed"), None, now=100.0, tuning=TUNING)
    assert plan.action == "record"
    assert plan.record == {"job": "job-1", "attempt": 1, "retryAt": 110.0}
    assert plan.wait == 10.0


def test_recorded_failure_waits_then_deletes_the_job() -> None:
    record = {"job": "job-1", "attempt": 1, "retryAt": 110.0}
    waiting = plan_prefetch_retry("job-1", prefetch("failed"), record, now=104.0, tuning=TUNING)
    assert (waiting.action, waiting.wait) == ("wait", 6.0)
    assert (
        plan_prefetch_retry("job-1", prefetch("failed"), record, now=110.0, tuning=TUNING).action == "delete"
    )
    # The next Job is attempt 2; its failure is a new record with a doubled delay.
    assert next_attempt("job-1", record) == 2
    again = plan_prefetch_retry("job-1", prefetch("failed", attempt=2), record, now=200.0, tuning=TUNING)
    assert again.record == {"job": "job-1", "attempt": 2, "retryAt": 220.0}


def test_backoff_is_capped() -> None:
    assert [retry_delay(a, 10, 60) for a in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


@pytest.mark.parametrize(
    ("state", "record", "action"),
    [
        ("succeeded", {"job": "job-1", "attempt": 1, "retryAt": 1}, "clear"),
        ("running", {"job": "old-job", "attempt": 3, "retryAt": 1}, "clear"),
        ("running", {"job": "job-1", "attempt": 1, "retryAt": 1}, "none"),
        ("running", None, "none"),
        ("absent", None, "none"),
    ],
)
def test_records_are_cleared_when_no_longer_relevant(state: str, record: dict | None, action: str) -> None:
    observed = observe_prefetch(None, []) if state == "absent" else prefetch(state)
    assert plan_prefetch_retry("job-1", observed, record, now=0.0, tuning=TUNING).action == action


def terminated_pod(name: str, result: dict, phase: str = "Failed") -> PodRecord:
    return pod_record(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": {"job-name": "job-1"}},
            "status": {
                "phase": phase,
                "containerStatuses": [{"state": {"terminated": {"message": json.dumps(result)}}}],
            },
        }
    )


def test_failed_job_reports_the_last_failed_pods_result() -> None:
    job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    pods = [
        terminated_pod("p-a", {"result": "Failed", "reason": "NetworkError"}),
        terminated_pod("p-b", {"result": "Failed", "reason": "Unauthorized"}),
    ]
    observed = observe_prefetch(job, pods)
    assert observed.state == "failed"
    assert observed.result == {"result": "Failed", "reason": "Unauthorized"}
    assert observed.running_pod_ip is None


def test_running_job_polls_its_running_pod() -> None:
    pod = pod_record(
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": {"batch.kubernetes.io/job-name": "j"}},
            "status": {"phase": "Running", "podIP": "10.1.2.3"},
        }
    )
    assert pod.job_name == "j"
    observed = observe_prefetch({"status": {"active": 1}}, [pod])
    assert (observed.state, observed.running_pod_ip, observed.attempt) == ("running", "10.1.2.3", 1)


def test_termination_message_takes_the_last_json_line() -> None:
    message = "some log line\n" + json.dumps({"result": "Succeeded", "sha": SHA}) + "\n"
    assert parse_result(message) == {"result": "Succeeded", "sha": SHA}
    assert parse_result("not json") is None
    assert parse_result('{"no": "result key"}') is None


def test_unschedulable_pod_keeps_scheduler_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pod = pod_record(
        {
            "metadata": {"name": "w", "namespace": "ns", "labels": {"livepeer.org/capability": "cap"}},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
                ],
            },
        }
    )
    assert pod.unschedulable == SchedulingProblem("Unschedulable", message)
    assert pod.capability == "cap" and not pod.ready


def base_spec(**changes) -> dict:
    spec = {
        "capability": {"name": "c"},
        "model": {"repo": "o/m"},
        "orchestrator": {"name": "o", "url": "http://o", "secretRef": {"name": "orch", "key": "s"}},
    }
    spec.update(changes)
    return spec


def test_resolved_revision_sources() -> None:
    spec = parse_spec(base_spec())
    with_sha = observe_prefetch(
        {"status": {"succeeded": 1}}, [terminated_pod("p", {"result": "Succeeded", "sha": SHA}, "Succeeded")]
    )
    assert resolved_revision(spec, with_sha, {}) == SHA
    no_pod = observe_prefetch({"status": {"succeeded": 1}}, [])
    assert resolved_revision(spec, no_pod, {"resolvedRevision": "b" * 40}) == "b" * 40
    pinned = parse_spec(base_spec(model={"repo": "o/m", "revision": "c" * 40}))
    assert resolved_revision(pinned, no_pod, {}) == "c" * 40
    assert resolved_revision(spec, observe_prefetch({"status": {}}, []), {"resolvedRevision": SHA}) is None


def test_secret_refs_name_every_secret_the_children_use() -> None:
    spec = parse_spec(
        base_spec(
            model={"repo": "o/m", "tokenSecretRef": {"name": "hf", "key": "t"}},
            serving={"tokenSecretRef": {"name": "w", "key": "t"}},
        )
    )
    assert [(f, r.name) for f, r in secret_refs(spec)] == [
        ("spec.model.tokenSecretRef", "hf"),
        ("spec.serving.tokenSecretRef", "w"),
        ("spec.orchestrator.secretRef", "orch"),
    ]


def status(phase: str, ready: str, reason: str = "Ready") -> dict:
    return {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": "m"}],
    }


@pytest.mark.parametrize(
    ("old", "new", "events"),
    [
        (status("Deploying", "False", "Progressing"), status("Ready", "True"), [("Normal", "Ready", "m")]),
        (status("Ready", "True"), status("Ready", "True"), []),
        (
            status("Ready", "True"),
            status("Deploying", "False", "WaitingForGPU"),
            [("Warning", "WaitingForGPU", "m")],
        ),
        (
            status("Downloading", "False", "Downloading"),
            status("Failed", "False", "Unauthorized"),
            [("Warning", "Unauthorized", "m")],
        ),
        (status("Failed", "False", "Unauthorized"), status("Failed", "False", "Unauthorized"), []),
        ({}, status("Pending", "False", "PrefetchPending"), []),
    ],
    ids=["becomes-ready", "stays-ready", "loses-ready", "fails", "stays-failed", "first-status"],
)
def test_events_only_on_ready_flips_and_failures(old: dict, new: dict, events: list) -> None:
    assert events_for(old, new) == events
