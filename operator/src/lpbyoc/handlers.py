"""kopf wiring: indexes of what the operator watches, and the triggers of the one reconcile.

Every trigger ends in `Reconciler.reconcile_now`/`trigger` for a capability key; no handler
looks at what kind of event woke it to decide what to do. The operator run is described by
`memo.runtime` (a `lpbyoc.reconcile.Runtime`), which the caller of `kopf.operator` provides.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx2
import kopf
from pydantic import ValidationError

from lpbyoc import naming, orchestrator
from lpbyoc.kube import KubeError
from lpbyoc.observe import (
    CacheUser,
    CapabilityRecord,
    ChildRecord,
    PodRecord,
    capability_record,
    child_record,
    pod_record,
)
from lpbyoc.operator_settings import configure
from lpbyoc.orchestrator import handlers as _orchestrator_handlers  # noqa: F401  (registers its handlers)
from lpbyoc.orchestrator.http import OrchestratorError
from lpbyoc.reconcile import Indexes, Key, Reconciler, Runtime
from lpbyoc.spec import GROUP, PLURAL, VERSION, parse_spec
from lpbyoc.view import CapabilityView

logger = logging.getLogger(__name__)

CAPABILITIES = (GROUP, VERSION, PLURAL)
MANAGED = {"app.kubernetes.io/managed-by": naming.MANAGED_BY}
# Retry delay for API failures a moment may cure (5xx, conflicts, throttling, lost connections).
TRANSIENT_DELAY = 5.0


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("the operator was started without memo.runtime (see lpbyoc.commands.run)")
    return runtime


def reconciler_of(memo: Any) -> Reconciler:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is None:
        reconciler = Reconciler(runtime_of(memo))
        memo.reconciler = reconciler
    assert isinstance(reconciler, Reconciler)
    return reconciler


def bind_indexes(memo: Any, kwargs: Mapping[str, Any]) -> Reconciler:
    """kopf hands its indexes to resource handlers as keyword arguments; keep them for the
    background reconciles (they are live mappings, so binding once is enough)."""
    reconciler = reconciler_of(memo)
    if reconciler.runtime.indexes is None:
        reconciler.runtime.indexes = Indexes(
            capabilities=kwargs["lpbyoc_capabilities"],
            cache_users=kwargs["lpbyoc_cache_users"],
            pvcs=kwargs["lpbyoc_pvcs"],
            jobs=kwargs["lpbyoc_jobs"],
            deployments=kwargs["lpbyoc_deployments"],
            services=kwargs["lpbyoc_services"],
            pods=kwargs["lpbyoc_pods"],
        )
        reconciler.start_resync()
    return reconciler


# -- operator lifecycle ---------------------------------------------------------------------------


@kopf.on.startup()
async def lpbyoc_startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    runtime = runtime_of(memo)
    configure(settings, api_double=bool(getattr(memo, "api_double", False)))
    reconciler = Reconciler(runtime)
    memo.reconciler = reconciler
    # A condition that changes outside a reconcile (aiModels.json written, a re-registration
    # failed) asks for a reconcile of that capability instead of waiting for the next resync.
    orchestrator.bind(runtime.kube, reconciler.trigger)


@kopf.on.login()
def lpbyoc_login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """An explicit `--server` URL (an API double), else the service account, else kubeconfig."""
    server = getattr(memo, "server", None)
    if server:
        return kopf.ConnectionInfo(server=str(server), insecure=True)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def lpbyoc_cleanup(memo: Any, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if isinstance(reconciler, Reconciler):
        await reconciler.stop()
    # The attachment's own tasks (registration refresh, aiModels writes) end with the operator.
    await orchestrator.orchestration().close()


# -- indexes --------------------------------------------------------------------------------------


@kopf.index(*CAPABILITIES)
def lpbyoc_capabilities(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, CapabilityRecord]:
    return {(namespace or "", name): capability_record(body)}


@kopf.index(*CAPABILITIES)
def lpbyoc_cache_users(
    body: kopf.Body, spec: kopf.Spec, namespace: str | None, name: str, uid: str, **_: Any
) -> dict[Key, CacheUser]:
    try:
        parsed = parse_spec(dict(spec))
    except ValidationError:
        return {}
    deleting = bool(body.get("metadata", {}).get("deletionTimestamp"))
    user = CacheUser(
        name=name,
        uid=uid or "",
        retain=parsed.cache.retain_on_delete,
        deleting=deleting,
        job=naming.prefetch_job_name(parsed),
        size=str(parsed.cache.size),
    )
    return {(namespace or "", naming.cache_claim_name(parsed)): user}


def _child(body: kopf.Body) -> dict[Key, ChildRecord]:
    record = child_record(body)
    return {(record.namespace, record.name): record}


@kopf.index("v1", "persistentvolumeclaims", labels=MANAGED)
def lpbyoc_pvcs(body: kopf.Body, **_: Any) -> dict[Key, ChildRecord]:
    return _child(body)


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
def lpbyoc_jobs(body: kopf.Body, **_: Any) -> dict[Key, ChildRecord]:
    return _child(body)


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def lpbyoc_deployments(body: kopf.Body, **_: Any) -> dict[Key, ChildRecord]:
    return _child(body)


@kopf.index("v1", "services", labels=MANAGED)
def lpbyoc_services(body: kopf.Body, **_: Any) -> dict[Key, ChildRecord]:
    return _child(body)


@kopf.index("v1", "pods", labels=MANAGED)
def lpbyoc_pods(body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], PodRecord]:
    """Prefetch pods by Job name, worker pods by capability."""
    record = pod_record(body)
    keys: dict[tuple[str, str, str], PodRecord] = {}
    if record.job_name:
        keys[("job", record.namespace, record.job_name)] = record
    if record.capability:
        keys[("capability", record.namespace, record.capability)] = record
    return keys


# -- triggers -------------------------------------------------------------------------------------


@kopf.on.resume(*CAPABILITIES)
@kopf.on.create(*CAPABILITIES)
@kopf.on.update(*CAPABILITIES, field="spec")
async def lpbyoc_reconcile(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """Ask for a reconcile and return at once. The reconcile runs on the operator's scheduler
    (one per capability, bounded, coalesced, retried with backoff), so kopf does not hold every
    handler and its event body while thousands of capabilities wait for a slot; a spec that
    retrying cannot fix is reported by the SpecValid condition."""
    bind_indexes(memo, kwargs).trigger((namespace or "", name), 0.0)


@kopf.on.event(*CAPABILITIES)
async def lpbyoc_capability_event(
    event: kopf.RawEvent, namespace: str | None, name: str, spec: kopf.Spec, memo: Any, **kwargs: Any
) -> None:
    """A capability that is gone: forget it, and let the users of its cache drop it as owner."""
    reconciler = bind_indexes(memo, kwargs)
    if event.get("type") != "DELETED":
        return
    namespace = namespace or ""
    reconciler.forget((namespace, name))
    with contextlib.suppress(ValidationError):
        claim = naming.cache_claim_name(parse_spec(dict(spec)))
        assert reconciler.runtime.indexes is not None
        for user in reconciler.runtime.indexes.users_of(namespace, claim):
            if user.name != name:
                reconciler.trigger((namespace, user.name))


def _owners_of_child(
    reconciler: Reconciler, kind: str, namespace: str, name: str, owners: tuple[str, ...]
) -> list[Key]:
    if owners:
        return [(namespace, owner) for owner in owners]
    indexes = reconciler.runtime.indexes
    if kind == "PersistentVolumeClaim" and indexes is not None:  # a retained cache has no owners
        return [(namespace, user.name) for user in indexes.users_of(namespace, name)]
    return []


@kopf.on.event("v1", "persistentvolumeclaims", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
async def lpbyoc_child_event(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    reconciler = bind_indexes(memo, kwargs)
    record = child_record(body)
    for key in _owners_of_child(reconciler, record.kind, record.namespace, record.name, record.owners):
        reconciler.trigger(key)


@kopf.on.event("v1", "pods", labels=MANAGED)
async def lpbyoc_pod_event(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    reconciler = bind_indexes(memo, kwargs)
    record = pod_record(body)
    keys: list[Key] = []
    if record.capability:
        keys.append((record.namespace, record.capability))
    if record.job_name and reconciler.runtime.indexes is not None:
        job = reconciler.runtime.indexes.child("Job", record.namespace, record.job_name)
        if job is not None:
            keys += [(record.namespace, owner) for owner in job.owners]
    for key in keys:
        reconciler.trigger(key)


# -- deletion -------------------------------------------------------------------------------------


def needs_cleanup(spec: kopf.Spec, **_: Any) -> bool:
    """Only byoc and liveRunner capabilities have state outside ownership (a registration)."""
    integration = (spec.get("capability") or {}).get("integration", "byoc")
    return bool(integration in ("byoc", "liveRunner"))


@kopf.on.delete(*CAPABILITIES, when=needs_cleanup)
async def lpbyoc_detach(
    spec: kopf.Spec, namespace: str | None, name: str, uid: str, memo: Any, **kwargs: Any
) -> None:
    """Unregister from the orchestrator before the finalizer goes; children go by ownerReference."""
    runtime = runtime_of(memo)
    try:
        parsed = parse_spec(dict(spec))
    except ValidationError:
        return  # never registered: nothing to undo
    view = CapabilityView(namespace=namespace or "", name=name, uid=uid or "", spec=parsed, deleting=True)
    try:
        await orchestrator.detach(view, runtime.kube)
    except (KubeError, OrchestratorError, httpx2.TransportError, OSError) as exc:
        raise kopf.TemporaryError(
            f"detach from the orchestrator failed: {exc}", delay=TRANSIENT_DELAY
        ) from exc
