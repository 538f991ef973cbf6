"""The aiModels writer against the Kubernetes API double: one object per orchestrator, coalesced
writes, the restart checksum on the go-livepeer workload, and the Registered condition.

Stand-in: kopf's index is a plain dict here (the same mapping of orchestrator → claims);
test_operator_aimodels.py runs the real kopf index and event handler.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from lpbyoc.kube import Kube
from lpbyoc.orchestrator import aimodels
from lpbyoc.orchestrator.aimodels import AiModelsClaim
from lpbyoc.orchestrator.aimodels_writer import AiModelsWriter

from tests.orchestrator.conftest import NAMESPACE, cr_body, put, secret_body, view_of, with_status

ORCH = (NAMESPACE, "orch-a")


def deployment(name: str = "go-livepeer") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
        },
    }


class Index(dict[tuple[str, str], list[AiModelsClaim]]):
    """What the kopf index holds: orchestrator key -> the claims of every capability naming it."""

    def set(self, *bodies: dict[str, Any]) -> None:
        self.clear()
        for body in bodies:
            claim = aimodels.claim_from_body(body)
            assert claim is not None
            self.setdefault(claim.orchestrator_key, []).append(claim)


async def stamped_checksum(kube: Kube) -> str | None:
    obj = await kube.get("apps/v1", "Deployment", "go-livepeer", NAMESPACE)
    assert obj is not None
    return (obj["spec"]["template"]["metadata"].get("annotations") or {}).get(aimodels.CHECKSUM_ANNOTATION)


async def stored_file(kube: Kube, kind: str = "ConfigMap") -> str | None:
    obj = await kube.get("v1", kind, "lpbyoc-aimodels-orch-a", NAMESPACE)
    return None if obj is None else obj["data"][aimodels.AIMODELS_KEY]


@pytest.fixture
def writer() -> AiModelsWriter:
    return AiModelsWriter(quiet_s=0.05, max_delay_s=1.0)


async def settle(writer: AiModelsWriter) -> None:
    assert await writer.settled(ORCH, 5.0)


async def test_n_capabilities_make_one_configmap_and_stamp_the_workload(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    bodies = [with_status(cr_body(f"cap{i}", model__repo=f"org/m{i}"), ready=i + 1) for i in range(5)]
    index = Index()
    index.set(*bodies)
    writer.attach(index, kube)
    writer.mark_dirty(ORCH)
    await settle(writer)
    text = await stored_file(kube)
    assert text is not None and writer.writes == 1
    assert text == aimodels.render_aimodels([aimodels.claim_from_body(b) for b in bodies])  # type: ignore[misc]
    entries = json.loads(text)
    assert [e["model_id"] for e in entries] == [f"org/m{i}" for i in range(5)]
    assert [e["capacity"] for e in entries] == [2 * (i + 1) for i in range(5)]
    assert await stamped_checksum(kube) == aimodels.checksum(text)
    view = view_of(cr_body("cap0", model__repo="org/m0"), ready=1)
    assert writer.condition(view).reason == "Listed"


async def test_burst_of_50_changes_is_one_write_and_unchanged_is_zero(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    index = Index()
    writer.attach(index, kube)
    for ready in range(1, 51):  # 50 scale steps in quick succession
        index.set(with_status(cr_body("restyle"), ready=ready))
        writer.mark_dirty(ORCH)
        await asyncio.sleep(0.001)
    await settle(writer)
    assert writer.writes == 1
    assert json.loads(await stored_file(kube) or "")[0]["capacity"] == 100
    writes_before = sum(kube.writes.values())
    for _ in range(20):  # the same state again and again
        writer.mark_dirty(ORCH)
    await settle(writer)
    assert writer.writes == 1
    assert sum(kube.writes.values()) == writes_before  # no ConfigMap write, no workload patch


async def test_scale_and_price_change_rewrite_file_and_checksum(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    index = Index()
    writer.attach(index, kube)
    index.set(with_status(cr_body("restyle"), ready=1))
    writer.mark_dirty(ORCH)
    await settle(writer)
    first = await stamped_checksum(kube)
    index.set(with_status(cr_body("restyle"), ready=2))
    writer.mark_dirty(ORCH)
    await settle(writer)
    second = await stamped_checksum(kube)
    index.set(with_status(cr_body("restyle", pricing__pricePerUnit=5), ready=2))
    writer.mark_dirty(ORCH)
    await settle(writer)
    third = await stamped_checksum(kube)
    assert len({first, second, third}) == 3 and None not in {first, second, third}
    entry = json.loads(await stored_file(kube) or "")[0]
    assert (entry["capacity"], entry["price_per_unit"]) == (4, 5)
    assert writer.writes == 3


async def test_delete_removes_the_entry(kmock_api: Any, kube: Kube, writer: AiModelsWriter) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    a, b = (
        with_status(cr_body("a", model__repo="org/a"), ready=1),
        with_status(cr_body("b", model__repo="org/b"), ready=1),
    )
    index = Index()
    writer.attach(index, kube)
    index.set(a, b)
    writer.changed("ml/a", ORCH)
    writer.changed("ml/b", ORCH)
    await settle(writer)
    index.set(b)  # kopf drops a deleted object from its index
    writer.changed("ml/a", None)
    await settle(writer)
    assert [e["model_id"] for e in json.loads(await stored_file(kube) or "")] == ["org/b"]


async def test_conflict_condition_names_the_winner(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    first = with_status(cr_body("first"), ready=1)
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    second = with_status(cr_body("second", model__repo="org/first"), ready=1)
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    index = Index()
    index.set(first, second)
    writer.attach(index, kube)
    writer.mark_dirty(ORCH)
    await settle(writer)
    lost = writer.condition(view_of(second))
    assert (lost.status, lost.reason) == ("False", "Conflict") and "ml/first" in lost.message
    assert writer.condition(view_of(first)).reason == "Listed"
    assert len(json.loads(await stored_file(kube) or "")) == 1


async def test_observation_from_the_reconcile_beats_stale_status(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    index = Index()
    index.set(with_status(cr_body("restyle"), ready=0, available=False))  # status not written yet
    writer.attach(index, kube)
    view = view_of(cr_body("restyle"), ready=2)
    writer.observe(view)
    await settle(writer)
    assert json.loads(await stored_file(kube) or "")[0]["capacity"] == 4
    assert writer.condition(view).status == "True"


async def test_missing_workload_and_missing_token_secret_are_reported(
    kmock_api: Any, kube: Kube, writer: AiModelsWriter
) -> None:
    index = Index()
    index.set(with_status(cr_body("restyle"), ready=1))
    writer.attach(index, kube)
    writer.mark_dirty(ORCH)
    await settle(writer)
    condition = writer.condition(view_of(cr_body("restyle")))
    assert (condition.status, condition.reason) == ("False", "WorkloadNotFound")
    assert "Deployment go-livepeer" in condition.message

    tokened = cr_body("restyle", serving__tokenSecretRef={"name": "worker-token", "key": "token"})
    index.set(with_status(tokened, ready=1))
    put(kmock_api, "apps/v1/deployments", deployment())
    writer.mark_dirty(ORCH)
    await settle(writer)
    condition = writer.condition(view_of(tokened))
    assert (condition.status, condition.reason) == ("False", "SecretNotFound")
    assert await kube.get("v1", "Secret", "lpbyoc-aimodels-orch-a", NAMESPACE) is None  # nothing half-written

    put(kmock_api, "v1/secrets", secret_body("worker-token", {"token": "t0ken"}))
    obj = None
    for _ in range(80):  # the retry comes after the backoff (1 s, then 2 s)
        obj = await kube.get("v1", "Secret", "lpbyoc-aimodels-orch-a", NAMESPACE)
        if obj is not None:
            break
        await asyncio.sleep(0.1)
    assert obj is not None
    await settle(writer)
    entry = json.loads(base64.b64decode(obj["data"][aimodels.AIMODELS_KEY]))[0]
    assert entry["token"] == "t0ken"
    assert writer.condition(view_of(tokened)).reason == "Listed"


async def test_restarted_operator_writes_nothing_when_the_file_is_current(kmock_api: Any, kube: Kube) -> None:
    put(kmock_api, "apps/v1/deployments", deployment())
    index = Index()
    index.set(with_status(cr_body("restyle"), ready=1))
    before = AiModelsWriter(quiet_s=0.05)
    before.attach(index, kube)
    before.mark_dirty(ORCH)
    assert await before.settled(ORCH, 5.0)
    await before.close()
    writes = sum(kube.writes.values())
    after = AiModelsWriter(quiet_s=0.05)  # a new process: empty memory, same cluster
    after.attach(index, kube)
    after.mark_dirty(ORCH)
    assert await after.settled(ORCH, 5.0)
    assert after.writes == 0 and sum(kube.writes.values()) == writes
    await after.close()
