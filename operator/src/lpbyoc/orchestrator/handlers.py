"""kopf handlers for aiModels.json: an index of every capability's claim and an event handler.

kopf populates indexes from the initial listing before it runs any other handler, so the
writer never renders from a partial set after an operator restart. The event handler sees
every change (and deletion) and marks the orchestrators it touches for a coalesced re-render.
"""

from __future__ import annotations

from typing import Any

import kopf

from lpbyoc.orchestrator import aimodels, orchestration
from lpbyoc.spec import GROUP, PLURAL, VERSION

RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.index(*RESOURCE)
def lpbyoc_aimodels_claims(body: kopf.Body, **_: Any) -> dict[tuple[str, str], aimodels.AiModelsClaim] | None:
    claim = aimodels.claim_from_body(body)
    return None if claim is None else {claim.orchestrator_key: claim}


@kopf.on.event(*RESOURCE)
async def lpbyoc_aimodels_changed(event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
    writer = orchestration().writer
    writer.attach(kwargs["lpbyoc_aimodels_claims"])  # the index above, passed by kopf under its name
    metadata = body.get("metadata") or {}
    key = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    claim = None if event.get("type") == "DELETED" else aimodels.claim_from_body(body)
    writer.changed(key, None if claim is None else claim.orchestrator_key, claim)
