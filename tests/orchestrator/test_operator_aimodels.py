"""aiModels mode through the real kopf operator against the kmock API double.

Mocked (cannot run here): the kubelet and the Job/Deployment controllers, whose status the
test writes (tests.support.kube), and go-livepeer itself, represented by its Deployment.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from lpbyoc import naming, orchestrator
from lpbyoc.orchestrator import aimodels
from lpbyoc.spec import parse_spec

from tests.support.kube import Cluster, cluster, operator, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

SHA = "0123456789abcdef0123456789abcdef01234567"
CM = "lpbyoc-aimodels-orch-a"


def aimodels_spec(name: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capability": {"name": name, "integration": "aiModels", "pipeline": "image-to-image"},
        "model": {"repo": f"org/{name}"},
        "gpu": {"count": 1},
        "replicas": 1,
        "capacityPerReplica": 2,
        "pricing": {"pricePerUnit": 100, "pixelsPerUnit": 1},
        "orchestrator": {"name": "orch-a", "workloadRef": {"kind": "Deployment", "name": "go-livepeer"}},
    }
    spec.update(changes)
    return spec


async def go_livepeer(cluster: Cluster) -> None:  # noqa: F811
    await cluster.kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "go-livepeer", "namespace": cluster.namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "go-livepeer"}},
                "template": {"metadata": {"labels": {"app": "go-livepeer"}}, "spec": {"containers": []}},
            },
        }
    )


async def bring_up(cluster: Cluster, name: str, spec: dict[str, Any], ip: str) -> None:  # noqa: F811
    """Play the cluster until the capability's worker is available."""
    await cluster.create_capability(name, spec)
    job = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job), what=f"{name} prefetch Job")
    await cluster.finish_job(
        job, {"result": "Succeeded", "reason": "Succeeded", "sha": SHA, "bytes": 1, "files": 1}
    )
    worker = naming.worker_name(name)
    await wait_for(lambda: cluster.get("apps/v1", "Deployment", worker), what=f"{name} worker Deployment")
    await cluster.add_worker_pod(name, ip=ip)
    await cluster.make_deployment_available(worker, replicas=1)


async def file_entries(cluster: Cluster) -> list[dict[str, Any]] | None:  # noqa: F811
    cm = await cluster.get("v1", "ConfigMap", CM)
    return None if cm is None else json.loads(cm["data"][aimodels.AIMODELS_KEY])


async def checksum(cluster: Cluster) -> str | None:  # noqa: F811
    dep = await cluster.get("apps/v1", "Deployment", "go-livepeer")
    assert dep is not None
    return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(aimodels.CHECKSUM_ANNOTATION)


async def test_capabilities_become_one_configmap_and_follow_changes(cluster: Cluster, operator: Any) -> None:  # noqa: F811
    await go_livepeer(cluster)
    await operator()
    names = ["alpha", "beta", "gamma"]
    for i, name in enumerate(names):
        await bring_up(cluster, name, aimodels_spec(name), ip=f"10.0.0.{10 + i}")

    async def all_listed() -> list[dict[str, Any]] | None:
        entries = await file_entries(cluster)
        return entries if entries and len(entries) == 3 else None

    entries = await wait_for(all_listed, within=30, what="three entries in aiModels.json")
    assert [e["model_id"] for e in entries] == ["org/alpha", "org/beta", "org/gamma"]
    assert all(
        e["url"] == f"http://{naming.worker_name(e['model_id'][4:])}.default.svc.cluster.local:8000"
        for e in entries
    )
    assert all(e["capacity"] == 2 and e["price_per_unit"] == 100 for e in entries)
    cm = await cluster.get("v1", "ConfigMap", CM)
    assert cm is not None
    expected = aimodels.checksum(cm["data"][aimodels.AIMODELS_KEY])
    # The file is written first, then go-livepeer's pod template is stamped (same flush).
    first_sum = await wait_for(lambda: _changed(cluster, None), within=10, what="the checksum stamp")
    assert first_sum == expected
    await cluster.wait_condition("alpha", "Registered", "Listed", within=20)

    # Scale: 2 ready replicas → capacity 4, new file, new checksum.
    await cluster.make_deployment_available(naming.worker_name("alpha"), replicas=2)

    async def scaled() -> bool:
        entries = await file_entries(cluster) or []
        return any(e["model_id"] == "org/alpha" and e["capacity"] == 4 for e in entries)

    await wait_for(scaled, within=20, what="alpha with capacity 4")
    second_sum = await wait_for(lambda: _changed(cluster, first_sum), within=20, what="a new checksum")

    # A burst of 50 price edits is one more write of the file.
    writer = orchestrator.orchestration().writer
    # The quiet gap must outlast the longest stall between two watch events on this shared
    # machine (kopf, kmock and the core's reconciles all on one loop); production uses 2 s.
    writer.quiet_s = 3.0
    await wait_for(_settled, within=20, what="the writer to settle before the burst")
    writes = writer.writes
    for price in range(101, 151):
        await cluster.patch_capability_spec("beta", {"pricing": {"pricePerUnit": price, "pixelsPerUnit": 1}})

    async def repriced() -> bool:
        entries = await file_entries(cluster) or []
        return any(e["model_id"] == "org/beta" and e["price_per_unit"] == 150 for e in entries)

    await wait_for(repriced, within=45, what="beta at price 150")
    await wait_for(_settled, within=20, what="the writer to settle")
    assert writer.writes - writes == 1, f"{writer.writes - writes} writes for one burst"
    third_sum = await checksum(cluster)
    assert third_sum not in (first_sum, second_sum)

    # Delete: the entry goes, the others stay.
    await cluster.delete_capability("gamma")

    async def gamma_gone() -> list[dict[str, Any]] | None:
        entries = await file_entries(cluster)
        return (
            entries if entries is not None and "org/gamma" not in [e["model_id"] for e in entries] else None
        )

    remaining = await wait_for(gamma_gone, within=20, what="gamma removed from aiModels.json")
    assert [e["model_id"] for e in remaining] == ["org/alpha", "org/beta"]


async def _changed(cluster: Cluster, old: str | None) -> str | None:  # noqa: F811
    new = await checksum(cluster)
    return new if new and new != old else None


async def _settled() -> bool:
    writer = orchestrator.orchestration().writer
    return not writer.is_pending(("default", "orch-a"))


async def test_conflict_and_unchanged_resync_writes_nothing(cluster: Cluster, operator: Any) -> None:  # noqa: F811
    await go_livepeer(cluster)
    run = await operator()
    await bring_up(cluster, "first", aimodels_spec("first"), ip="10.0.0.21")
    await cluster.wait_condition("first", "Registered", "Listed", within=15)
    await bring_up(cluster, "second", aimodels_spec("second", model={"repo": "org/first"}), ip="10.0.0.22")
    cond = await cluster.wait_condition("second", "Registered", "Conflict", within=15)
    assert "first" in cond["message"] and cond["status"] == "False"
    entries = await file_entries(cluster)
    assert entries is not None and [e["model_id"] for e in entries] == ["org/first"]

    # Resyncs (every second here) and an operator restart rewrite nothing.
    writes = orchestrator.orchestration().writer.writes

    await asyncio.sleep(2.5)
    assert orchestrator.orchestration().writer.writes == writes
    await run.restart()
    await cluster.wait_condition("first", "Registered", "Listed", within=15)
    assert orchestrator.orchestration().writer.writes == 0  # a fresh writer found the file current
