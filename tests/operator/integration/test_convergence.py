"""Level-based behaviour of the real kopf operator against kmock: updates, restarts, idleness, deletion.

Mocked: the kubelet/controllers (tests write Job, Deployment and pod status) and the garbage
collector, which kmock lacks: `Cluster.collect_garbage` deletes what ownerReferences would.
"""

from __future__ import annotations

import asyncio

import pytest
from lpbyoc import naming
from lpbyoc.spec import parse_spec

from tests.operator.integration.conftest import ORCH_SECRET, byoc_spec
from tests.support.kube import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("with_orch_secret")

SHA = "89abcdef0123456789abcdef0123456789abcdef"
SUCCEEDED = {"result": "Succeeded", "reason": "Succeeded", "sha": SHA, "bytes": 1, "files": 1}


async def bring_to_ready(cluster: Cluster, name: str, spec: dict) -> None:
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")
    await cluster.finish_job(job_name, SUCCEEDED)
    worker = naming.worker_name(name)
    await wait_for(lambda: cluster.get("apps/v1", "Deployment", worker), what="the Deployment")
    await cluster.add_worker_pod(name)
    await cluster.make_deployment_available(worker, replicas=spec.get("replicas", 1))
    await cluster.wait_phase(name, "Ready")


async def counts(cluster: Cluster) -> dict[str, int]:
    kinds = {
        "pvc": ("v1", "PersistentVolumeClaim"),
        "job": ("batch/v1", "Job"),
        "deployment": ("apps/v1", "Deployment"),
        "service": ("v1", "Service"),
    }
    return {key: len(await cluster.list(*kind)) for key, kind in kinds.items()}


async def test_idle_operator_makes_no_writes(cluster: Cluster, operator, orch) -> None:
    run = await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    await bring_to_ready(cluster, "restyle", spec)
    await cluster.quiet(for_s=1.5)  # the last Events and status writes of the way to Ready
    before, gets_before = cluster.writes(), cluster.requests_by_method()["GET"]
    log_before = len(cluster.write_log())

    await asyncio.sleep(4 * run.tuning.resync_interval)

    assert cluster.write_bodies()[log_before:] == [], "an idle resync wrote to the API"
    assert cluster.writes() == before
    assert cluster.requests_by_method()["GET"] > gets_before, "the resync did not run at all"
    # The watch delivered what the operator wrote, so it keeps no second copy of the status.
    assert run.runtime is not None and run.runtime.written_status == {}


async def test_spec_change_updates_children_without_duplicates(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    await bring_to_ready(cluster, "restyle", spec)
    worker = naming.worker_name("restyle")

    await cluster.patch_capability_spec(
        "restyle", {"replicas": 3, "serving": {"image": "registry.local/worker:2"}}
    )

    async def updated() -> dict | None:
        dep = await cluster.get("apps/v1", "Deployment", worker)
        containers = (dep or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ok = (
            dep
            and dep["spec"]["replicas"] == 3
            and all(c["image"] == "registry.local/worker:2" for c in containers)
        )
        return dep if ok else None

    await wait_for(updated, what="the Deployment with 3 replicas and the new image")
    assert await counts(cluster) == {"pvc": 1, "job": 1, "deployment": 1, "service": 1}

    async def observed_generation() -> bool:
        return (await cluster.status("restyle")).get("observedGeneration") == 2

    await wait_for(observed_generation, what="status.observedGeneration 2")


async def test_restart_mid_way_converges_without_duplicates(cluster: Cluster, operator, orch) -> None:
    run = await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await cluster.wait_phase("restyle", "Downloading")
    await run.stop()

    # While the operator is down the download finishes.
    await cluster.finish_job(job_name, SUCCEEDED)
    creates_before = cluster.requests_by_method()["POST"]
    await run.start()

    worker = naming.worker_name("restyle")
    await wait_for(
        lambda: cluster.get("apps/v1", "Deployment", worker), what="the Deployment after the restart"
    )
    await cluster.add_worker_pod("restyle")
    await cluster.make_deployment_available(worker)
    await cluster.wait_phase("restyle", "Ready")
    assert await counts(cluster) == {"pvc": 1, "job": 1, "deployment": 1, "service": 1}
    creates = [w for w in cluster.write_log() if w.startswith("POST")][
        -(cluster.requests_by_method()["POST"] - creates_before) :
    ]
    created_kinds = sorted(w.rsplit("/", 1)[-1] for w in creates if not w.endswith("/events"))
    # The restarted operator created only what did not exist yet (and the worker pod the test added);
    # a create of an existing child would show here even though the API refused it.
    assert created_kinds == ["deployments", "pods"], created_kinds


async def test_delete_byoc_unregisters_then_children_go(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    await bring_to_ready(cluster, "restyle", spec)
    cap = await cluster.capability("restyle")
    assert cap["metadata"]["finalizers"] == ["livepeer.org/cleanup"]
    assert "restyle" in orch.capabilities

    await cluster.delete_capability("restyle")
    await wait_for(lambda: _gone(cluster, "restyle"), what="the capability to be gone")
    assert "restyle" in orch.unregistered
    removed = await cluster.collect_garbage()
    assert sorted(removed) == sorted(
        [
            f"PersistentVolumeClaim/{naming.cache_claim_name(parse_spec(spec))}",
            f"Job/{naming.prefetch_job_name(parse_spec(spec))}",
            f"Deployment/{naming.worker_name('restyle')}",
            f"Service/{naming.worker_name('restyle')}",
        ]
    )


async def test_retained_cache_has_no_owner_and_survives_delete(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url, cache={"size": "5Gi", "retainOnDelete": True})
    await cluster.create_capability("keeper", spec)
    claim = naming.cache_claim_name(parse_spec(spec))
    pvc = await wait_for(lambda: cluster.get("v1", "PersistentVolumeClaim", claim), what="the cache PVC")
    assert "ownerReferences" not in pvc["metadata"]

    await cluster.delete_capability("keeper")
    await wait_for(lambda: _gone(cluster, "keeper"), what="the capability to be gone")
    await cluster.collect_garbage()
    assert await cluster.get("v1", "PersistentVolumeClaim", claim) is not None


async def test_aimodels_capability_gets_no_finalizer(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(
        orch.url,
        capability={"name": "img2img", "integration": "aiModels", "pipeline": "image-to-image"},
        orchestrator={"name": "orch-main", "workloadRef": {"kind": "Deployment", "name": "go-livepeer"}},
    )
    await cluster.create_capability("img2img", spec)
    await cluster.wait_phase("img2img", "Downloading")
    cap = await cluster.capability("img2img")
    assert not cap["metadata"].get("finalizers")
    await cluster.delete_capability("img2img")
    assert await cluster.capability("img2img") is None


async def _gone(cluster: Cluster, name: str) -> bool:
    return await cluster.capability(name) is None


async def test_namespace_scope_and_all_namespaces(cluster: Cluster, operator, orch) -> None:
    """Namespaced by default: a capability elsewhere is ignored; --all-namespaces sees both."""
    run = await operator(namespaces=("default",))
    await cluster.create_secret("orch", {"secret": ORCH_SECRET}, namespace="team-b")
    await cluster.create_capability("here", byoc_spec(orch.url))
    await cluster.create_capability("there", byoc_spec(orch.url), namespace="team-b")
    await cluster.wait_phase("here", "Downloading")
    await asyncio.sleep(3 * run.tuning.resync_interval)
    assert await cluster.status("there", namespace="team-b") == {}

    await run.stop()
    await operator(clusterwide=True)

    async def there_downloading() -> bool:
        return (await cluster.status("there", namespace="team-b")).get("phase") == "Downloading"

    await wait_for(there_downloading, what="the capability in team-b to be reconciled")
    claim = naming.cache_claim_name(parse_spec(byoc_spec(orch.url)))
    assert await cluster.get("v1", "PersistentVolumeClaim", claim, "team-b") is not None
