"""One level-based reconcile of one capability, and the scheduler that runs it.

`reconcile_capability` reads what the indexes hold (never the event that woke it), asks the
pure builders and policies what should exist and what the status says, writes only the
differences, and says when it wants to look again. `Reconciler` serialises reconciles per
capability, coalesces bursts of triggers, bounds how many run at once and resyncs everything
periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import kopf
from pydantic import ValidationError

from lpbyoc import compat, metrics, naming, orchestrator
from lpbyoc.builders import BuildContext, build_children, largest_quantity
from lpbyoc.conditions import READY, find, merge, status_patch
from lpbyoc.kube import Kube, KubeError
from lpbyoc.observe import (
    ATTEMPT_ANNOTATION,
    RETRY_ANNOTATION,
    CacheUser,
    CapabilityRecord,
    ChildRecord,
    PodRecord,
    PrefetchObserved,
    fetch_progress,
    observe_deployment,
    observe_prefetch,
    observe_workers,
    pvc_phase,
)
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.policy import Observed, compute_conditions, compute_phase, desired_status
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import API_VERSION, KIND, LivepeerCapabilitySpec, SecretKeyRef, parse_spec
from lpbyoc.storage import access_mode_problem
from lpbyoc.validation import cel_errors, defaulted_spec
from lpbyoc.view import CapabilityView, ConditionResult

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
SHA_LENGTH = 40


async def registration(view: CapabilityView, kube: Kube) -> ConditionResult:
    """The Registered condition from the orchestrator attachment."""
    return await orchestrator.sync(view, kube)


@dataclass
class Indexes:
    """The kopf indexes (live mappings of key -> store of records) the reconcile reads."""

    capabilities: Mapping[Any, Iterable[CapabilityRecord]]
    cache_users: Mapping[Any, Iterable[CacheUser]]
    pvcs: Mapping[Any, Iterable[ChildRecord]]
    jobs: Mapping[Any, Iterable[ChildRecord]]
    deployments: Mapping[Any, Iterable[ChildRecord]]
    services: Mapping[Any, Iterable[ChildRecord]]
    pods: Mapping[Any, Iterable[PodRecord]]

    @staticmethod
    def first(index: Mapping[Any, Iterable[Any]], key: Any) -> Any:
        store = index.get(key)
        return next(iter(store), None) if store is not None else None

    def capability(self, key: Key) -> CapabilityRecord | None:
        record: CapabilityRecord | None = self.first(self.capabilities, key)
        return record

    def child(self, kind: str, namespace: str, name: str) -> ChildRecord | None:
        index = {
            "PersistentVolumeClaim": self.pvcs,
            "Job": self.jobs,
            "Deployment": self.deployments,
            "Service": self.services,
        }[kind]
        record: ChildRecord | None = self.first(index, (namespace, name))
        return record

    def pods_of(self, key: tuple[str, str, str]) -> list[PodRecord]:
        return list(self.pods.get(key) or ())

    def users_of(self, namespace: str, claim: str) -> list[CacheUser]:
        return list(self.cache_users.get((namespace, claim)) or ())

    def capability_keys(self) -> list[Key]:
        return [key for key in self.capabilities if isinstance(key, tuple) and len(key) == 2]


@dataclass
class Runtime:
    """Everything a reconcile needs besides the capability: built once per operator run."""

    kube: Kube
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    tuning: RuntimeTuning = field(default_factory=RuntimeTuning)
    indexes: Indexes | None = None
    clock: Callable[[], float] = time.time
    # The status this operator last wrote per capability (compact JSON): fresher than a lagging watch.
    written_status: dict[Key, str] = field(default_factory=dict)
    phases: dict[Key, str] = field(default_factory=dict)
    # (kind, namespace, name) -> (expires at, what was read): Secret key names, StorageClass presence.
    reference_cache: dict[tuple[str, str, str], tuple[float, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    phase: str
    requeue_after: float | None = None
    permanent_error: str | None = None


# -- pure decisions -------------------------------------------------------------------------------


def spec_error_message(exc: ValidationError) -> str:
    """One line per problem, with the camelCase path the user wrote."""
    parts = []
    for error in exc.errors()[:5]:
        path = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"spec.{path}: {error.get('msg')}" if path else str(error.get("msg")))
    return "; ".join(parts)


CEL_CACHE_SIZE = 4096
_cel_cache: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()


def cel_problems(spec_json: str) -> tuple[str, ...]:
    """The CEL rules' verdict on one spec (compact JSON), cached: specs rarely change. Keyed by
    the spec's digest, so the cache holds no second copy of every spec."""
    key = hashlib.sha256(spec_json.encode()).digest()
    problems = _cel_cache.get(key)
    if problems is None:
        problems = tuple(cel_errors(defaulted_spec(json.loads(spec_json))))
        if len(_cel_cache) >= CEL_CACHE_SIZE:
            _cel_cache.popitem(last=False)
    _cel_cache[key] = problems
    _cel_cache.move_to_end(key)
    return problems


def secret_refs(spec: LivepeerCapabilitySpec) -> list[tuple[str, SecretKeyRef]]:
    """Every Secret key the children or the attachment will read, with the field naming it."""
    refs: list[tuple[str, SecretKeyRef]] = []
    if spec.model.token_secret_ref is not None:
        refs.append(("spec.model.tokenSecretRef", spec.model.token_secret_ref))
    if spec.serving.token_secret_ref is not None:
        refs.append(("spec.serving.tokenSecretRef", spec.serving.token_secret_ref))
    if spec.capability.integration != "aiModels" and spec.orchestrator.secret_ref is not None:
        refs.append(("spec.orchestrator.secretRef", spec.orchestrator.secret_ref))
    if spec.orchestrator.tls.ca_bundle_secret_ref is not None:
        refs.append(("spec.orchestrator.tls.caBundleSecretRef", spec.orchestrator.tls.ca_bundle_secret_ref))
    return refs


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff for the prefetch Job attempt that just failed (1-based), capped."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class RetryPlan:
    """What to do about a failed (or formerly failed) prefetch Job."""

    action: Literal["none", "record", "wait", "delete", "clear"]
    record: dict[str, Any] | None = None
    wait: float | None = None


def plan_prefetch_retry(
    job_name: str,
    prefetch: PrefetchObserved,
    record: Mapping[str, Any] | None,
    now: float,
    tuning: RuntimeTuning,
) -> RetryPlan:
    """Failed Job: remember the failure (with the time to retry), wait, then delete it so the
    next reconcile creates the next attempt. The record lives on the capability, so a
    restarted operator keeps the backoff."""
    same_job = record is not None and record.get("job") == job_name
    if prefetch.state != "failed":
        stale = record is not None and (prefetch.state == "succeeded" or not same_job)
        return RetryPlan("clear") if stale else RetryPlan("none")
    if not same_job or record is None or record.get("attempt") != prefetch.attempt:
        delay = retry_delay(prefetch.attempt, tuning.retry_base, tuning.retry_cap)
        new_record = {"job": job_name, "attempt": prefetch.attempt, "retryAt": round(now + delay, 3)}
        return RetryPlan("record", new_record, delay)
    retry_at = float(record.get("retryAt") or 0)
    if now < retry_at:
        return RetryPlan("wait", None, retry_at - now)
    return RetryPlan("delete", None, tuning.debounce)


def next_attempt(job_name: str, record: Mapping[str, Any] | None) -> int:
    if record is not None and record.get("job") == job_name:
        return int(record.get("attempt") or 0) + 1
    return 1


def resolved_revision(
    spec: LivepeerCapabilitySpec, prefetch: PrefetchObserved, previous_status: Mapping[str, Any]
) -> str | None:
    """The commit the cache holds: the prefetcher's result, a pinned SHA, or what status said."""
    if prefetch.state != "succeeded":
        return None
    sha = (prefetch.result or {}).get("sha")
    if isinstance(sha, str) and sha:
        return sha
    if len(spec.model.revision) == SHA_LENGTH and all(c in "0123456789abcdef" for c in spec.model.revision):
        return spec.model.revision
    previous = previous_status.get("resolvedRevision")
    return str(previous) if previous else None


def with_attempt(job: dict[str, Any], attempt: int) -> dict[str, Any]:
    meta = dict(job["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), ATTEMPT_ANNOTATION: str(attempt)}
    return {**job, "metadata": meta}


def events_for(old_status: Mapping[str, Any], new_status: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a status change deserves: Ready flips and failures."""
    old_ready = find(old_status.get("conditions"), READY) or {}
    new_ready = find(new_status.get("conditions"), READY) or {}
    events: list[tuple[str, str, str]] = []
    if new_ready.get("status") == "True" and old_ready.get("status") != "True":
        events.append(("Normal", "Ready", str(new_ready.get("message") or "")))
    elif new_ready.get("status") != "True" and old_ready.get("status") == "True":
        events.append(
            ("Warning", str(new_ready.get("reason") or "NotReady"), str(new_ready.get("message") or ""))
        )
    if new_status.get("phase") == "Failed" and old_status.get("phase") != "Failed":
        events.append(
            ("Warning", str(new_ready.get("reason") or "Failed"), str(new_ready.get("message") or ""))
        )
    return events


# -- the reconcile ----------------------------------------------------------------------------------


async def _write_status(
    rt: Runtime, cap: CapabilityRecord, old: Mapping[str, Any], new: dict[str, Any]
) -> None:
    key = (cap.namespace, cap.name)
    patch = status_patch(old, new)
    if patch is None:
        return
    try:
        await rt.kube.patch_status(API_VERSION, KIND, cap.name, cap.namespace, patch)
    except KubeError as exc:
        if exc.status == 404:  # deleted meanwhile
            return
        raise
    rt.written_status[key] = json.dumps(new, separators=(",", ":"), sort_keys=True)
    for event_type, reason, message in events_for(old, new):
        _post_event(cap, event_type, reason, message)


def _post_event(cap: CapabilityRecord, event_type: str, reason: str, message: str) -> None:
    try:
        kopf.event(
            kopf.Body(cast(kopf.RawBody, cap.reference())), type=event_type, reason=reason, message=message
        )
    except (LookupError, RuntimeError) as exc:  # outside a running operator (unit use)
        logger.debug("event %s not posted: %s", reason, exc)


def _previous_status(rt: Runtime, cap: CapabilityRecord) -> dict[str, Any]:
    key = (cap.namespace, cap.name)
    written = rt.written_status.get(key)
    if written == cap.status_json:
        del rt.written_status[key]  # the watch caught up: the index holds the same status
        written = None
    if written is None:
        return cap.status()
    status: dict[str, Any] = json.loads(written)
    return status


def _now_text(rt: Runtime) -> str:
    return datetime.fromtimestamp(rt.clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _report(
    rt: Runtime,
    cap: CapabilityRecord,
    obs: Observed,
    *,
    previous: Mapping[str, Any] | None = None,
    endpoint: str = "",
    resolved_revision: str | None = None,
) -> str:
    """Status from what was observed (conditions, phase), written only if it changed; the phase."""
    old = _previous_status(rt, cap) if previous is None else previous
    conds = compute_conditions(obs)
    phase = compute_phase(conds, obs)
    conditions = merge(old.get("conditions"), conds, cap.generation, _now_text(rt))
    new = desired_status(
        obs,
        conditions,
        observed_generation=cap.generation,
        endpoint=endpoint,
        selector=naming.worker_selector(cap.name),
        resolved_revision=resolved_revision,
        phase=phase,
    )
    await _write_status(rt, cap, old, new)
    return phase


async def _secret_keys(rt: Runtime, namespace: str, name: str) -> frozenset[str] | None:
    """The key names of a Secret (never its values), or None when it does not exist; cached
    briefly because many capabilities usually name the same few Secrets."""
    cache_key = ("Secret", namespace, name)
    cached = rt.reference_cache.get(cache_key)
    if cached is not None and cached[0] > rt.clock():
        return cast(frozenset[str] | None, cached[1])
    secret = await rt.kube.get("v1", "Secret", name, namespace)
    keys = (
        None if secret is None else frozenset((secret.get("data") or {}) | (secret.get("stringData") or {}))
    )
    rt.reference_cache[cache_key] = (rt.clock() + rt.tuning.reference_ttl, keys)
    return keys


async def _storage_class_provisioner(rt: Runtime, name: str) -> str | None:
    """The class's provisioner, or None when the class does not exist (cached briefly)."""
    cache_key = ("StorageClass", "", name)
    cached = rt.reference_cache.get(cache_key)
    if cached is not None and cached[0] > rt.clock():
        return cast(str | None, cached[1])
    storage_class = await rt.kube.get("storage.k8s.io/v1", "StorageClass", name)
    provisioner = None if storage_class is None else str(storage_class.get("provisioner") or "")
    rt.reference_cache[cache_key] = (rt.clock() + rt.tuning.reference_ttl, provisioner)
    return provisioner


@dataclass(frozen=True)
class Preflight:
    """References that are read, not watched: any problem here stops the reconcile."""

    missing_secrets: tuple[str, ...] = ()
    storage_class_missing: str | None = None
    access_mode_unsupported: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing_secrets or self.storage_class_missing or self.access_mode_unsupported)


async def _preflight(rt: Runtime, cap: CapabilityRecord, spec: LivepeerCapabilitySpec) -> Preflight:
    missing: list[str] = []
    for field_path, ref in secret_refs(spec):
        keys = await _secret_keys(rt, cap.namespace, ref.name)
        if keys is None:
            missing.append(f"{ref.name} ({field_path})")
        elif ref.key not in keys:
            missing.append(f"{ref.name} has no key {ref.key!r} ({field_path})")
    class_name = spec.cache.storage_class_name
    if not class_name or spec.cache.existing_claim:
        return Preflight(tuple(missing))
    provisioner = await _storage_class_provisioner(rt, class_name)
    if provisioner is None:
        return Preflight(tuple(missing), storage_class_missing=class_name)
    problem = access_mode_problem(class_name, provisioner, spec.cache.access_modes)
    return Preflight(tuple(missing), access_mode_unsupported=problem)


async def reconcile_capability(rt: Runtime, key: Key) -> Outcome:
    """Converge one capability's children and status on what its spec asks for."""
    assert rt.indexes is not None, "the indexes are bound before the first reconcile"
    idx = rt.indexes
    cap = idx.capability(key)
    if cap is None or cap.deleting:
        return Outcome(phase="")
    namespace, name = key
    try:
        spec = parse_spec(cap.spec())
    except ValidationError as exc:
        message = spec_error_message(exc)
        phase = await _report(rt, cap, Observed(spec_error=message))
        return Outcome(phase=phase, permanent_error=message)
    # The CRD's CEL rules, again: an API server without them (older, or an API double) would
    # otherwise let through e.g. an aiModels capability without a pipeline.
    rule_problems = cel_problems(cap.spec_json)
    if rule_problems:
        message = "; ".join(rule_problems)
        phase = await _report(rt, cap, Observed(spec_error=message))
        return Outcome(phase=phase, permanent_error=message)

    preflight = await _preflight(rt, cap, spec)
    if not preflight.ok:
        obs = Observed(
            desired_replicas=spec.replicas,
            gpu_resource_name=spec.gpu.resource_name,
            missing_secrets=preflight.missing_secrets,
            storage_class_missing=preflight.storage_class_missing,
            access_mode_unsupported=preflight.access_mode_unsupported,
        )
        return Outcome(phase=await _report(rt, cap, obs), requeue_after=rt.tuning.resync_interval)

    claim = naming.cache_claim_name(spec)
    job_name = naming.prefetch_job_name(spec)
    worker = naming.worker_name(name)
    previous_status = _previous_status(rt, cap)

    pvc = idx.child("PersistentVolumeClaim", namespace, claim)
    job = idx.child("Job", namespace, job_name)
    job_body = job.body() if job is not None else None
    prefetch = observe_prefetch(job_body, idx.pods_of(("job", namespace, job_name)))
    requeue: list[float] = []

    # A failed prefetch is retried by deleting its Job after a backoff; nobody deletes Jobs by hand.
    record = cap.retry()
    plan = plan_prefetch_retry(job_name, prefetch, record, rt.clock(), rt.tuning)
    if plan.action in ("record", "clear"):
        value = json.dumps(plan.record, separators=(",", ":"), sort_keys=True) if plan.record else None
        await rt.kube.patch_merge(
            API_VERSION, KIND, name, namespace, {"metadata": {"annotations": {RETRY_ANNOTATION: value}}}
        )
        record = plan.record
    if plan.action == "delete":
        await rt.kube.delete("batch/v1", "Job", job_name, namespace)
    if plan.wait is not None:
        requeue.append(plan.wait)

    progress = None
    if prefetch.running_pod_ip:
        progress = await fetch_progress(
            prefetch.running_pod_ip, rt.settings.progress_port, rt.tuning.progress_timeout
        )
    if prefetch.state == "running":
        requeue.append(rt.tuning.progress_interval)
        metrics.set_prefetch(
            namespace, name, (progress or {}).get("bytesDone"), (progress or {}).get("bytesTotal")
        )
    else:
        metrics.forget_prefetch(namespace, name)

    revision = resolved_revision(spec, prefetch, previous_status)
    # What the cache holds, and whether it can serve this capability: decided before the worker
    # Deployment exists, so an incompatible model never schedules a pod that asks for a GPU.
    verdict = (
        compat.judge(spec, compat.recorded_model(prefetch.result, previous_status, revision))
        if revision is not None
        else compat.Verdict(task=None, problem=None, status=None)
    )
    users = [u for u in idx.users_of(namespace, claim) if not u.deleting]
    ctx = BuildContext(
        namespace=namespace,
        name=name,
        uid=cap.uid,
        spec=spec,
        generation=cap.generation,
        resolved_revision=revision,
        cache_users=tuple({(u.name, u.uid) for u in users} | {(name, cap.uid)}),
        # Only the users that want the same snapshot own its Job (same claim, other revisions don't).
        prefetch_users=tuple({(u.name, u.uid) for u in users if u.job == job_name} | {(name, cap.uid)}),
        cache_size=largest_quantity([u.size for u in users if u.size] + [str(spec.cache.size)]),
        retain_cache=any(u.retain for u in users),
        settings=rt.settings,
        task=verdict.task,
    )
    servable = revision is not None and verdict.problem is None
    for desired in build_children(ctx, weights_ready=servable):
        kind = desired["kind"]
        observed_record = idx.child(kind, namespace, desired["metadata"]["name"])
        observed = observed_record.body() if observed_record is not None else None
        if kind == "Job":
            if prefetch.state == "failed":
                continue  # kept as evidence until its retry time, then deleted above
            attempt = prefetch.attempt if observed is not None else next_attempt(job_name, record)
            desired = with_attempt(desired, attempt)
        await rt.kube.ensure(desired, observed)

    deployment_record = idx.child("Deployment", namespace, worker)
    if verdict.problem is not None and deployment_record is not None:
        # The spec now asks for what the model cannot serve: its pods would fail (holding GPUs).
        await rt.kube.delete("apps/v1", "Deployment", worker, namespace)
        deployment_record = None
    deployment = observe_deployment(deployment_record.body() if deployment_record is not None else None)
    unschedulable, ready_ips = observe_workers(
        idx.pods_of(("capability", namespace, naming.label_value(name)))
    )
    endpoint = naming.endpoint(name, namespace, spec.serving.port, rt.settings.cluster_domain)
    available = deployment is not None and deployment.available > 0
    view = CapabilityView(
        namespace=namespace,
        name=name,
        uid=cap.uid,
        spec=spec,
        creation_timestamp=cap.creation_timestamp,
        ready_replicas=deployment.ready if deployment else 0,
        worker_available=available,
        endpoint=endpoint,
        resolved_revision=revision or "",
        ready_pod_ips=ready_ips,
    )
    registered = await registration(view, rt.kube)

    obs = Observed(
        desired_replicas=spec.replicas,
        gpu_resource_name=spec.gpu.resource_name,
        pvc_phase=pvc_phase(pvc.body() if pvc is not None else None),
        prefetch_state=prefetch.state,
        prefetch_result=prefetch.result,
        prefetch_progress=progress,
        deployment=deployment,
        unschedulable=unschedulable,
        registered=registered,
        model=verdict.status,
        model_problem=verdict.problem,
    )
    phase = await _report(
        rt, cap, obs, previous=previous_status, endpoint=endpoint, resolved_revision=revision
    )
    return Outcome(phase=phase, requeue_after=min(requeue) if requeue else None)


# -- scheduling -------------------------------------------------------------------------------------


class Reconciler:
    """Runs `reconcile_capability` per key: one at a time per key, coalesced, bounded, resynced."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._locks: dict[Key, asyncio.Lock] = {}
        self._scheduled: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._limit = asyncio.Semaphore(runtime.tuning.concurrency)
        self._resync: asyncio.Task[None] | None = None

    async def reconcile_now(self, key: Key) -> Outcome:
        """Reconcile `key` and return its outcome (exceptions propagate to the caller)."""
        self._cancel_scheduled(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock, self._limit:
            started = time.perf_counter()
            try:
                outcome = await reconcile_capability(self.runtime, key)
            except Exception as exc:
                metrics.RECONCILES.labels(outcome="error").inc()
                metrics.ERRORS.labels(reason=error_reason(exc)).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(outcome="ok").inc()
        self._record_phase(key, outcome.phase)
        if outcome.requeue_after is not None:
            self.trigger(key, outcome.requeue_after)
        return outcome

    def trigger(self, key: Key, delay: float | None = None) -> None:
        """Reconcile `key` after `delay` (the debounce by default); an earlier request wins."""
        loop = asyncio.get_running_loop()
        delay = self.runtime.tuning.debounce if delay is None else max(0.0, delay)
        when = loop.time() + delay
        scheduled = self._scheduled.get(key)
        if scheduled is not None:
            if scheduled[0] <= when:
                return
            scheduled[1].cancel()
        self._scheduled[key] = (when, loop.call_at(when, self._spawn, key))

    def forget(self, key: Key) -> None:
        self._cancel_scheduled(key)
        self._locks.pop(key, None)
        self.runtime.written_status.pop(key, None)
        self.runtime.phases.pop(key, None)
        metrics.forget_prefetch(*key)
        metrics.set_phases(self.runtime.phases.values())

    def _cancel_scheduled(self, key: Key) -> None:
        scheduled = self._scheduled.pop(key, None)
        if scheduled is not None:
            scheduled[1].cancel()

    def _record_phase(self, key: Key, phase: str) -> None:
        if phase:
            self.runtime.phases[key] = phase
        else:
            self.runtime.phases.pop(key, None)
        metrics.set_phases(self.runtime.phases.values())

    def _spawn(self, key: Key) -> None:
        self._scheduled.pop(key, None)
        if key in self._active:
            # One background reconcile per key, queued or running: it runs once more when done,
            # so a burst of triggers never piles up tasks (or repeated work) behind the lock.
            self._dirty.add(key)
            return
        self._active.add(key)
        task = asyncio.get_running_loop().create_task(self._background(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                try:
                    await self.reconcile_now(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("reconcile of %s/%s failed, retrying: %s", key[0], key[1], exc)
                    self.trigger(key, self.runtime.tuning.retry_base)
                    return
                if key not in self._dirty:
                    return
        finally:
            self._active.discard(key)

    def start_resync(self) -> None:
        if self._resync is None:
            self._resync = asyncio.get_running_loop().create_task(self._resync_forever())

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.runtime.tuning.resync_interval)
            if self.runtime.indexes is None:
                continue
            for key in self.runtime.indexes.capability_keys():
                self.trigger(key, 0.0)

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
        for _, handle in self._scheduled.values():
            handle.cancel()
        self._scheduled.clear()
        tasks = [*self._tasks, *([self._resync] if self._resync else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def error_reason(exc: BaseException) -> str:
    if isinstance(exc, KubeError):
        return f"Api{exc.status}"
    return type(exc).__name__
