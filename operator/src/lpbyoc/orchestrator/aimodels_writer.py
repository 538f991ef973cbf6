"""Writes each orchestrator's aiModels.json and restarts go-livepeer when, and only when, it changed.

Input comes from a kopf index of every capability's claim (kopf fills indexes from the initial
listing before any other handler runs, so the first render after an operator restart already
sees every capability and never writes a partial file) merged with the latest observation
each reconcile hands to `observe` (fresher than the CR status the reconcile writes after it).

Changes are coalesced per orchestrator: a flush runs once `quiet_s` passed without a new
change, or `max_delay_s` after the first one, so a burst of edits is one write and one
go-livepeer restart. A render equal to what was last written writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

from lpbyoc.kube import Kube, KubeError, needs_update
from lpbyoc.orchestrator import aimodels
from lpbyoc.orchestrator.aimodels import AiModelsClaim, Observation, Resolution
from lpbyoc.orchestrator.backoff import Backoff
from lpbyoc.view import CapabilityView, ConditionResult

logger = logging.getLogger(__name__)

OrchestratorKey = tuple[str, str]
ClaimIndex = Mapping[Hashable, Iterable[AiModelsClaim]]

WORKLOAD_API = "apps/v1"


@dataclass(frozen=True)
class Flushed:
    """The last outcome for one orchestrator."""

    resolution: Resolution
    object_kind: str = ""
    checksum: str = ""
    error: ConditionResult | None = None  # set when the write or the restart stamp failed


class AiModelsWriter:
    def __init__(
        self,
        *,
        # A go-livepeer restart drops live streams; a file written seconds later costs nothing.
        quiet_s: float = 2.0,
        max_delay_s: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=60.0)
        self.kube: Kube | None = None
        # Called with the (namespace, name) of every capability of an orchestrator after its
        # file was flushed, so the reconcile can re-read the Registered condition at once.
        self.on_flushed: Callable[[list[tuple[str, str]]], None] | None = None
        self.writes = 0  # object writes (ConfigMap/Secret create or patch), for tests and the benchmark
        self._index: ClaimIndex | None = None
        self._observations: dict[str, Observation] = {}
        self._orchestrator_of: dict[str, OrchestratorKey] = {}
        self._seen: dict[str, AiModelsClaim] = {}  # the claim each capability made at its last event
        self._written: dict[OrchestratorKey, str] = {}  # rendered text known to be stored
        self._outcomes: dict[OrchestratorKey, Flushed] = {}
        self._dirty: dict[OrchestratorKey, asyncio.Event] = {}
        self._settled: dict[OrchestratorKey, asyncio.Event] = {}
        self._tasks: dict[OrchestratorKey, asyncio.Task[None]] = {}
        self._failures: dict[OrchestratorKey, int] = {}

    # -- inputs --------------------------------------------------------------------------------

    def attach(self, index: ClaimIndex, kube: Kube | None = None) -> None:
        self._index = index
        if kube is not None:
            self.kube = kube

    def changed(
        self,
        capability_key: str,
        orchestrator_key: OrchestratorKey | None,
        claim: AiModelsClaim | None = None,
    ) -> None:
        """A capability's claim changed (or vanished, with None): re-render where it was and is.

        With `claim` given, an event that leaves the claim as it was (a status-only update,
        a resync) marks nothing, so it does not hold back a pending write.
        """
        if claim is not None and self._seen.get(capability_key) == claim:
            return
        if claim is None:
            self._seen.pop(capability_key, None)
        else:
            self._seen[capability_key] = claim
        previous = self._orchestrator_of.pop(capability_key, None)
        if orchestrator_key is not None:
            self._orchestrator_of[capability_key] = orchestrator_key
            self.mark_dirty(orchestrator_key)
        else:
            self._observations.pop(capability_key, None)
        if previous is not None and previous != orchestrator_key:
            self.mark_dirty(previous)

    def observe(self, view: CapabilityView) -> OrchestratorKey | None:
        claim = aimodels.claim_from_view(view)
        if claim is None:
            return None
        observation = aimodels.observe(view)
        if self._observations.get(view.key) != observation:
            self._observations[view.key] = observation
            self.changed(view.key, claim.orchestrator_key)
        else:
            self._orchestrator_of[view.key] = claim.orchestrator_key
        return claim.orchestrator_key

    def forget(self, view: CapabilityView) -> None:
        claim = aimodels.claim_from_view(view)
        self._observations[view.key] = aimodels.Observation(False, 0, "", deleting=True)
        if claim is not None:
            self.changed(view.key, claim.orchestrator_key)

    # -- coalescing ----------------------------------------------------------------------------

    def mark_dirty(self, key: OrchestratorKey) -> None:
        self._dirty.setdefault(key, asyncio.Event()).set()
        self._settled.setdefault(key, asyncio.Event()).clear()
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._flush_loop(key), name=f"aimodels-{key[0]}-{key[1]}"
            )

    async def settled(self, key: OrchestratorKey, wait_s: float) -> bool:
        event = self._settled.get(key)
        if event is None:
            return key in self._outcomes
        try:
            await asyncio.wait_for(event.wait(), wait_s)
        except TimeoutError:
            return False
        return True

    async def _flush_loop(self, key: OrchestratorKey) -> None:
        dirty = self._dirty[key]
        while dirty.is_set():
            first = time.monotonic()
            dirty.clear()
            # Trailing debounce, bounded: wait for a quiet gap, but never past max_delay_s.
            while True:
                remaining = first + self.max_delay_s - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(dirty.wait(), min(self.quiet_s, remaining))
                except TimeoutError:
                    break
                dirty.clear()
            if self.kube is None or self._index is None:
                # Nothing to write with yet: keep the change pending until attach() and a new mark.
                dirty.set()
                await asyncio.sleep(self.quiet_s)
                continue
            outcome = await self._flush(key)
            before = self._outcomes.get(key)
            self._outcomes[key] = outcome
            if self.on_flushed is not None and outcome != before:
                self.on_flushed(sorted((c.namespace, c.name) for c in self.claims(key)))
            if outcome.error is not None:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                self._settled[key].set()
                await asyncio.sleep(self.backoff.delay(failures))
                dirty.set()
                continue
            self._failures.pop(key, None)
        self._settled.setdefault(key, asyncio.Event()).set()

    # -- the flush -----------------------------------------------------------------------------

    def claims(self, key: OrchestratorKey) -> list[AiModelsClaim]:
        stored = list(self._index.get(key, ()) if self._index is not None else ())
        return [aimodels.with_observation(c, self._observations.get(c.key)) for c in stored]

    async def _tokens(self, listed: Iterable[AiModelsClaim]) -> tuple[dict[str, str], ConditionResult | None]:
        assert self.kube is not None
        tokens: dict[str, str] = {}
        for claim in listed:
            if claim.token_ref is None:
                continue
            value = await self.kube.read_secret(claim.namespace, claim.token_ref)
            if value is None:
                return tokens, ConditionResult(
                    "False",
                    "SecretNotFound",
                    f"worker token Secret {claim.token_ref.name} key {claim.token_ref.key} "
                    f"(serving.tokenSecretRef of {claim.key}) not found",
                )
            tokens[claim.key] = value
        return tokens, None

    async def _flush(self, key: OrchestratorKey) -> Flushed:
        assert self.kube is not None
        namespace, orchestrator = key
        claims = self.claims(key)
        resolution = aimodels.resolve(claims)
        secret = aimodels.needs_secret(claims)
        kind = "Secret" if secret else "ConfigMap"
        try:
            tokens, token_error = await self._tokens(resolution.listed)
            if token_error is not None:
                return Flushed(resolution, kind, error=token_error)
            rendered = aimodels.render_entries(resolution.listed, tokens)
            digest = aimodels.checksum(rendered)
            if self._written.get(key) != rendered:
                await self._store(namespace, orchestrator, rendered, secret=secret)
                self._written[key] = rendered
            missing = await self._stamp(namespace, claims, digest)
        except KubeError as exc:
            return Flushed(resolution, kind, error=ConditionResult("False", "WriteFailed", f"{kind}: {exc}"))
        except Exception as exc:  # a malformed object or a client fault must not end the writer
            logger.exception("aiModels flush for %s/%s failed", namespace, orchestrator)
            return Flushed(
                resolution,
                kind,
                error=ConditionResult("False", "WriteFailed", f"{type(exc).__name__}: {exc}"),
            )
        if missing:
            message = f"{', '.join(missing)} not found in {namespace}: go-livepeer cannot be restarted to load the file"
            return Flushed(
                resolution, kind, digest, error=ConditionResult("False", "WorkloadNotFound", message)
            )
        return Flushed(resolution, kind, digest)

    async def _store(self, namespace: str, orchestrator: str, rendered: str, *, secret: bool) -> None:
        assert self.kube is not None
        desired = aimodels.file_object(namespace, orchestrator, rendered, secret=secret)
        if secret:
            # `data` (base64) rather than stringData, so an unchanged Secret compares equal when read back.
            desired.pop("stringData")
            desired["data"] = {aimodels.AIMODELS_KEY: base64.b64encode(rendered.encode()).decode()}
        name = aimodels.object_name(orchestrator)
        observed = await self.kube.get("v1", desired["kind"], name, namespace)
        if not needs_update(desired, observed):
            return  # already stored (e.g. by the operator before it restarted)
        await self.kube.ensure(desired, observed)
        self.writes += 1
        logger.info(
            "aiModels.json written to %s %s/%s (%s)",
            desired["kind"],
            namespace,
            name,
            desired["metadata"]["annotations"][aimodels.CHECKSUM_ANNOTATION][:12],
        )

    async def _stamp(self, namespace: str, claims: Iterable[AiModelsClaim], digest: str) -> list[str]:
        assert self.kube is not None
        missing = []
        for workload in aimodels.workloads(c for c in claims if not c.deleting):
            observed = await self.kube.get(WORKLOAD_API, workload.kind, workload.name, namespace)
            if observed is None:
                missing.append(f"{workload.kind} {workload.name}")
                continue
            annotations = ((observed.get("spec") or {}).get("template") or {}).get("metadata") or {}
            if (annotations.get("annotations") or {}).get(aimodels.CHECKSUM_ANNOTATION) != digest:
                await self.kube.patch_merge(
                    WORKLOAD_API, workload.kind, workload.name, namespace, aimodels.checksum_patch(digest)
                )
        return missing

    # -- the Registered condition --------------------------------------------------------------

    def condition(self, view: CapabilityView) -> ConditionResult:
        """Conflicts and waiting come from the claims as they are now; `Listed` only from a written file."""
        claim = aimodels.claim_from_view(view)
        if claim is None:
            return ConditionResult("Unknown", "NotAiModels", "capability is not in aiModels mode")
        key = claim.orchestrator_key
        claims = {c.key: c for c in self.claims(key)}
        claims[claim.key] = aimodels.with_observation(
            claims.get(claim.key, claim), self._observations.get(claim.key)
        )
        current = aimodels.resolve(claims.values())
        if claim.key in current.conflicts:
            return ConditionResult(
                "False",
                "Conflict",
                f"pipeline {claim.pipeline} model_id {claim.model_id} on orchestrator {claim.orchestrator} "
                f"is already claimed by {current.conflicts[claim.key]} (older); this capability is left out of "
                "aiModels.json",
            )
        name = aimodels.object_name(claim.orchestrator)
        if claim.key in current.waiting:
            return ConditionResult(
                "False", "WaitingForWorker", f"listed in {name} once the worker Service answers /health"
            )
        outcome = self._outcomes.get(key)
        if outcome is None:
            return ConditionResult("Unknown", "Pending", f"{name} not written yet")
        if outcome.error is not None:
            return outcome.error
        if any(c.key == claim.key for c in outcome.resolution.listed):
            update = "; an update is being written" if self.is_pending(key) else ""
            return ConditionResult(
                "True",
                "Listed",
                f"listed in {outcome.object_kind} {name} (checksum {outcome.checksum[:12]}), "
                f"go-livepeer restarts to load it{update}",
            )
        return ConditionResult("Unknown", "Pending", f"{name} is being re-rendered (changes are coalesced)")

    def is_pending(self, key: OrchestratorKey) -> bool:
        settled = self._settled.get(key)
        return settled is not None and not settled.is_set()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
