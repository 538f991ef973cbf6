"""aiModels.json: what go-livepeer reads at startup to attach external runners.

Pure functions only. One file per orchestrator (namespace + `spec.orchestrator.name`), built
from every aiModels capability naming it. The input is an `AiModelsClaim`: the few fields of a
capability the file depends on, built either from a `CapabilityView` (reconcile) or from a raw
CR body (the kopf index, so a restarting operator renders from the complete set of objects).

Only capabilities whose worker is available are listed: go-livepeer polls each `url`'s
`/health` for 2 minutes at startup and refuses to start if one stays down. Availability is the
Deployment's ready replicas, and the adapter's readiness probe (`/ready`, 503 until Triton has
the model loaded) is stricter than `/health` (200 even while loading), so a listed Service
answers `/health`; the operator does not probe it again from its own network position.

go-livepeer's `AIModelConfig` (core/ai.go) parses `price_per_unit`/`pixels_per_unit` from the
raw JSON bytes as big rationals, so they are emitted as JSON numbers, never strings; an
unknown `pipeline` panics the node, which the CRD enum prevents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from lpbyoc.spec import SecretKeyRef, WorkloadRef, parse_spec
from lpbyoc.view import CapabilityView

AIMODELS_KEY = "aiModels.json"
CHECKSUM_ANNOTATION = "livepeer.org/aimodels-checksum"
OBJECT_PREFIX = "lpbyoc-aimodels-"
# Offline rendering (`lpbyoc render`) has no Secret values; it shows where each token comes from.
TOKEN_PLACEHOLDER = "$(secret {name}/{key})"


@dataclass(frozen=True)
class AiModelsClaim:
    """One capability's claim on an (orchestrator, pipeline, model_id) slot, plus what was observed."""

    namespace: str
    name: str
    orchestrator: str
    pipeline: str
    model_id: str
    creation_timestamp: str = ""
    warm: bool = True
    price_per_unit: int = 0
    pixels_per_unit: int = 1
    currency: str = ""
    token_ref: SecretKeyRef | None = None
    workload: WorkloadRef | None = None
    # Observed state: listed only when the worker's Service answers /health (WorkerAvailable).
    available: bool = False
    capacity: int = 0
    url: str = ""
    deleting: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def orchestrator_key(self) -> tuple[str, str]:
        return (self.namespace, self.orchestrator)

    @property
    def slot(self) -> tuple[str, str]:
        return (self.pipeline, self.model_id)

    @property
    def listable(self) -> bool:
        return self.available and not self.deleting and self.capacity > 0 and bool(self.url)


@dataclass(frozen=True)
class Observation:
    """What the reconcile saw of the worker; fresher than the CR status it writes afterwards."""

    available: bool
    capacity: int
    url: str
    deleting: bool = False


@dataclass(frozen=True)
class Resolution:
    """The outcome for one orchestrator: who is listed, who lost a slot, who waits for its worker."""

    listed: tuple[AiModelsClaim, ...]
    conflicts: Mapping[str, str] = field(default_factory=dict)  # loser key -> winner key
    waiting: frozenset[str] = frozenset()


def object_name(orchestrator: str) -> str:
    return f"{OBJECT_PREFIX}{orchestrator}"


def claim_from_view(view: CapabilityView) -> AiModelsClaim | None:
    spec = view.spec
    if spec.capability.integration != "aiModels" or spec.capability.pipeline is None:
        return None
    return AiModelsClaim(
        namespace=view.namespace,
        name=view.name,
        orchestrator=spec.orchestrator.name,
        pipeline=spec.capability.pipeline,
        model_id=spec.model_id,
        creation_timestamp=view.creation_timestamp,
        warm=spec.warm,
        price_per_unit=spec.pricing.price_per_unit,
        pixels_per_unit=spec.pricing.pixels_per_unit,
        currency=spec.pricing.currency,
        token_ref=spec.serving.token_secret_ref,
        workload=spec.orchestrator.workload_ref,
        available=view.worker_available,
        capacity=view.capacity,
        url=view.endpoint,
        deleting=view.deleting,
    )


def _condition_true(status: Mapping[str, Any], condition_type: str) -> bool:
    for condition in status.get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == condition_type:
            return condition.get("status") == "True"
    return False


def claim_from_body(body: Mapping[str, Any]) -> AiModelsClaim | None:
    """The claim a CR makes, from its spec and the status the reconcile last wrote.

    A spec that does not parse claims nothing: the reconcile reports it as SpecValid=False.
    """
    metadata = body.get("metadata") or {}
    try:
        spec = parse_spec(body.get("spec") or {})
    except ValidationError:
        return None
    status = body.get("status") or {}
    view = CapabilityView(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        spec=spec,
        creation_timestamp=str(metadata.get("creationTimestamp") or ""),
        ready_replicas=int(status.get("readyReplicas") or 0),
        worker_available=_condition_true(status, "WorkerAvailable"),
        endpoint=str(status.get("endpoint") or ""),
        deleting=bool(metadata.get("deletionTimestamp")),
    )
    return claim_from_view(view)


def observe(view: CapabilityView) -> Observation:
    return Observation(
        available=view.worker_available, capacity=view.capacity, url=view.endpoint, deleting=view.deleting
    )


def with_observation(claim: AiModelsClaim, observation: Observation | None) -> AiModelsClaim:
    if observation is None:
        return claim
    return replace(
        claim,
        available=observation.available,
        capacity=observation.capacity,
        url=observation.url,
        deleting=claim.deleting or observation.deleting,
    )


def _age_order(claim: AiModelsClaim) -> tuple[str, str]:
    # RFC 3339 timestamps in UTC sort as strings; an empty timestamp (not yet known) sorts last.
    return (claim.creation_timestamp or "~", claim.name)


def resolve(claims: Iterable[AiModelsClaim]) -> Resolution:
    """Decide the entries of one orchestrator's file.

    The oldest claim on a (pipeline, model_id) slot wins whether or not its worker is up yet,
    so a flapping worker never hands the slot to another capability and back.
    """
    live = sorted((c for c in claims if not c.deleting), key=_age_order)
    winners: dict[tuple[str, str], AiModelsClaim] = {}
    conflicts: dict[str, str] = {}
    for claim in live:
        winner = winners.setdefault(claim.slot, claim)
        if winner is not claim:
            conflicts[claim.key] = winner.key
    listed = tuple(sorted((c for c in winners.values() if c.listable), key=lambda c: c.slot))
    waiting = frozenset(c.key for c in winners.values() if not c.listable)
    return Resolution(listed=listed, conflicts=conflicts, waiting=waiting)


def _token_value(claim: AiModelsClaim, tokens: Mapping[str, str] | None) -> str | None:
    if claim.token_ref is None:
        return None
    if tokens is not None and claim.key in tokens:
        return tokens[claim.key]
    return TOKEN_PLACEHOLDER.format(name=claim.token_ref.name, key=claim.token_ref.key)


def entry(claim: AiModelsClaim, tokens: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One AIModelConfig object, keys in go-livepeer's declaration order."""
    item: dict[str, Any] = {
        "pipeline": claim.pipeline,
        "model_id": claim.model_id,
        "url": claim.url,
    }
    token = _token_value(claim, tokens)
    if token is not None:
        item["token"] = token
    item["warm"] = claim.warm
    item["capacity"] = claim.capacity
    item["price_per_unit"] = claim.price_per_unit
    item["pixels_per_unit"] = claim.pixels_per_unit
    if claim.currency:
        item["currency"] = claim.currency
    return item


def _claims(
    items: Iterable[CapabilityView | AiModelsClaim], assume_ready: bool = False
) -> list[AiModelsClaim]:
    claims: list[AiModelsClaim] = []
    for item in items:
        claim = claim_from_view(item) if isinstance(item, CapabilityView) else item
        if claim is not None and assume_ready and isinstance(item, CapabilityView):
            # Offline preview: the entry as it will read once every replica is ready.
            capacity = item.spec.replicas * item.spec.capacity_per_replica
            claim = replace(claim, available=capacity > 0, capacity=capacity)
        if claim is not None:
            claims.append(claim)
    return claims


def render_entries(listed: Iterable[AiModelsClaim], tokens: Mapping[str, str] | None = None) -> str:
    # Stable bytes: entries sorted by (pipeline, model_id), fixed key order, 2-space indent, final newline.
    return json.dumps([entry(c, tokens) for c in listed], indent=2, ensure_ascii=False) + "\n"


def render_aimodels(
    items: Iterable[CapabilityView | AiModelsClaim], tokens: Mapping[str, str] | None = None
) -> str:
    """aiModels.json for the claims given (callers pass one orchestrator's capabilities).

    `tokens` maps a capability key (`namespace/name`) to its worker token, read from the Secret
    its `serving.tokenSecretRef` names; without it the entry shows a placeholder.
    """
    return render_entries(resolve(_claims(items)).listed, tokens)


def checksum(rendered: str) -> str:
    return hashlib.sha256(rendered.encode()).hexdigest()


def needs_secret(claims: Iterable[AiModelsClaim]) -> bool:
    """A worker token is a credential: a file that carries one goes in a Secret, not a ConfigMap.

    ConfigMaps are readable by roles that may not read Secrets, are not encrypted at rest and
    print in `kubectl describe`. The kind is decided from every live claim naming the
    orchestrator (listed or not), so it does not flip while workers come and go.
    """
    return any(c.token_ref is not None and not c.deleting for c in claims)


def file_object(namespace: str, orchestrator: str, rendered: str, *, secret: bool) -> dict[str, Any]:
    metadata = {
        "name": object_name(orchestrator),
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "lpbyoc",
            "app.kubernetes.io/part-of": "livepeer-byoc",
            "app.kubernetes.io/component": "aimodels",
        },
        "annotations": {CHECKSUM_ANNOTATION: checksum(rendered)},
    }
    if secret:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "stringData": {AIMODELS_KEY: rendered},
        }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {AIMODELS_KEY: rendered}}


def group_by_orchestrator(claims: Iterable[AiModelsClaim]) -> dict[tuple[str, str], list[AiModelsClaim]]:
    groups: dict[tuple[str, str], list[AiModelsClaim]] = {}
    for claim in claims:
        groups.setdefault(claim.orchestrator_key, []).append(claim)
    return dict(sorted(groups.items()))


def render_configmaps(
    items: Iterable[CapabilityView | AiModelsClaim],
    tokens: Mapping[str, str] | None = None,
    *,
    assume_ready: bool = False,
) -> list[dict[str, Any]]:
    """One object per orchestrator holding its aiModels.json (a Secret when it carries tokens).

    `assume_ready` (for `lpbyoc render`, which has no cluster) lists every view as if all its
    replicas were ready; the views must then carry their Service URL in `endpoint`.
    """
    objects = []
    for (namespace, orchestrator), claims in group_by_orchestrator(_claims(items, assume_ready)).items():
        rendered = render_aimodels(claims, tokens)
        objects.append(file_object(namespace, orchestrator, rendered, secret=needs_secret(claims)))
    return objects


def workloads(claims: Iterable[AiModelsClaim]) -> list[WorkloadRef]:
    """The go-livepeer workloads to restart; normally every claim names the same one."""
    seen = {(c.workload.kind, c.workload.name): c.workload for c in claims if c.workload is not None}
    return [seen[k] for k in sorted(seen)]


def checksum_patch(value: str) -> dict[str, Any]:
    """Merge patch that stamps the checksum on a Deployment/StatefulSet pod template."""
    return {"spec": {"template": {"metadata": {"annotations": {CHECKSUM_ANNOTATION: value}}}}}
