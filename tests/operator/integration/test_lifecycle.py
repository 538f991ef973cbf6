"""The real kopf operator against the kmock API double: a capability from creation to Ready.

Mocked: the kubelet and the Job/Deployment controllers (the tests write the status they would
write), and the Hugging Face download (the prefetch pod's termination message is written by
the test). The orchestrator is the go-livepeer double on loopback.
"""

from __future__ import annotations

import json

import pytest
from lpbyoc import naming
from lpbyoc.spec import parse_spec

from tests.operator.integration.conftest import byoc_spec
from tests.support.kube import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("with_orch_secret")

SHA = "0123456789abcdef0123456789abcdef01234567"


async def test_create_makes_cache_claim_and_prefetch_job(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    parsed = parse_spec(spec)
    claim = naming.cache_claim_name(parsed)
    job_name = naming.prefetch_job_name(parsed)

    pvc = await wait_for(lambda: cluster.get("v1", "PersistentVolumeClaim", claim), what="the cache PVC")
    job = await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")

    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    cap = await cluster.capability("restyle")
    assert [r["uid"] for r in pvc["metadata"]["ownerReferences"]] == [cap["metadata"]["uid"]]
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    command = pod_spec["containers"][0]["command"]
    assert command[:6] == [
        "lpbyoc-worker",
        "prefetch",
        "--repo",
        "livepeer-byoc/restyle",
        "--revision",
        "main",
    ]
    assert pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    # No Deployment before the weights are cached.
    assert await cluster.get("apps/v1", "Deployment", naming.worker_name("restyle")) is None
    status = await cluster.wait_phase("restyle", "Downloading")
    assert {c["type"]: c["reason"] for c in status["conditions"]}["WeightsCached"] == "Downloading"


async def test_job_done_and_deployment_available_reach_ready(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")

    await cluster.finish_job(
        job_name, {"result": "Succeeded", "reason": "Succeeded", "sha": SHA, "bytes": 10, "files": 1}
    )
    worker = naming.worker_name("restyle")
    deployment = await wait_for(
        lambda: cluster.get("apps/v1", "Deployment", worker), what="the worker Deployment"
    )
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert naming.weights_dir("livepeer-byoc/restyle", SHA) in init["command"]
    # The status is written after the children in the same reconcile: wait for it, don't race it.
    await cluster.wait_phase("restyle", "Deploying")

    await cluster.add_worker_pod("restyle")
    await cluster.make_deployment_available(worker, replicas=1)
    status = await cluster.wait_phase("restyle", "Ready")

    assert status["resolvedRevision"] == SHA
    assert status["readyReplicas"] == 1
    assert status["endpoint"] == f"http://{worker}.default.svc.cluster.local:8000"
    assert status["progress"] == "100%"
    assert orch.capabilities["restyle"].body["capacity"] == 2


async def test_failed_prefetch_reports_reason_then_retries_with_a_new_job(
    cluster: Cluster, operator, orch
) -> None:
    """The Job is deleted and recreated by the operator after a backoff (0.5 s in these tests)."""
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")

    result = {"result": "Failed", "reason": "Unauthorized", "message": "401 from the Hub: token rejected"}
    await cluster.finish_job(job_name, result)
    cond = await cluster.wait_condition("restyle", "WeightsCached", "Unauthorized")
    assert cond["message"] == "401 from the Hub: token rejected"
    status = await cluster.status("restyle")
    assert status["phase"] == "Failed"
    retry = json.loads(
        (await cluster.capability("restyle"))["metadata"]["annotations"]["livepeer.org/prefetch-retry"]
    )
    assert retry["job"] == job_name and retry["attempt"] == 1

    async def second_attempt() -> dict | None:
        job = await cluster.get("batch/v1", "Job", job_name)
        annotations = (job or {}).get("metadata", {}).get("annotations", {})
        return job if annotations.get("livepeer.org/prefetch-attempt") == "2" else None

    job = await wait_for(second_attempt, within=10, what="the second prefetch attempt")
    assert "status" not in job or not job["status"].get("conditions")
    assert len([j for j in await cluster.list("batch/v1", "Job")]) == 1


async def test_unschedulable_worker_pod_is_waiting_for_gpu(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")
    await cluster.finish_job(job_name, {"result": "Succeeded", "reason": "Succeeded", "sha": SHA})
    await wait_for(
        lambda: cluster.get("apps/v1", "Deployment", naming.worker_name("restyle")), what="the Deployment"
    )

    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    await cluster.add_worker_pod("restyle", unschedulable_message=message)
    cond = await cluster.wait_condition("restyle", "WorkerAvailable", "WaitingForGPU")
    assert message in cond["message"]
    ready = await cluster.condition("restyle", "Ready")
    assert ready["status"] == "False" and ready["reason"] == "WaitingForGPU"


async def test_missing_storage_class_and_secret_have_specific_reasons(
    cluster: Cluster, operator, orch
) -> None:
    await operator()
    await cluster.create_capability(
        "fast-cache", byoc_spec(orch.url, cache={"size": "5Gi", "storageClassName": "fast"})
    )
    cond = await cluster.wait_condition("fast-cache", "SpecValid", "StorageClassNotFound")
    assert "'fast'" in cond["message"]
    assert (await cluster.status("fast-cache"))["phase"] == "Failed"
    assert await cluster.list("v1", "PersistentVolumeClaim") == []

    # Creating the StorageClass is noticed by the periodic resync (classes are read, not watched).
    await cluster.create_storage_class("fast")
    await cluster.wait_phase("fast-cache", "Downloading")

    gated = byoc_spec(orch.url, model={"repo": "org/gated", "tokenSecretRef": {"name": "hf", "key": "token"}})
    await cluster.create_capability("gated", gated)
    cond = await cluster.wait_condition("gated", "SpecValid", "SecretNotFound")
    assert "hf (spec.model.tokenSecretRef)" in cond["message"]
    assert await cluster.get("batch/v1", "Job", naming.prefetch_job_name(parse_spec(gated))) is None


async def test_two_capabilities_of_one_model_share_claim_and_job(cluster: Cluster, operator, orch) -> None:
    await operator()
    spec_a = byoc_spec(orch.url)
    spec_b = byoc_spec(orch.url, capability={"name": "restyle-b", "integration": "byoc"})
    a = await cluster.create_capability("restyle-a", spec_a)
    b = await cluster.create_capability("restyle-b", spec_b)
    claim = naming.cache_claim_name(parse_spec(spec_a))
    job_name = naming.prefetch_job_name(parse_spec(spec_a))
    uids = sorted([a["metadata"]["uid"], b["metadata"]["uid"]])

    async def shared_by_both() -> bool:
        pvc = await cluster.get("v1", "PersistentVolumeClaim", claim)
        job = await cluster.get("batch/v1", "Job", job_name)
        return bool(pvc and job) and all(
            sorted(r["uid"] for r in obj["metadata"]["ownerReferences"]) == uids for obj in (pvc, job)
        )

    async def both_services() -> bool:
        return len(await cluster.list("v1", "Service")) == 2

    await wait_for(shared_by_both, what="one PVC and one Job owned by both capabilities")
    # Each capability's own children come from its own reconcile, which may run a moment later.
    await wait_for(both_services, what="a Service per capability")
    assert len(await cluster.list("v1", "PersistentVolumeClaim")) == 1
    assert len(await cluster.list("batch/v1", "Job")) == 1


async def test_other_revisions_of_one_model_share_the_claim_not_the_job(
    cluster: Cluster, operator, orch
) -> None:
    """One claim per (repo, storage class) sized for its largest user; one Job per snapshot, owned only by its users."""
    await operator()
    spec_main = byoc_spec(orch.url)
    spec_pinned = byoc_spec(
        orch.url,
        capability={"name": "restyle-pinned", "integration": "byoc"},
        model={"repo": spec_main["model"]["repo"], "revision": SHA},
        cache={"size": "8Gi"},
    )
    main = await cluster.create_capability("restyle-main", spec_main)
    pinned = await cluster.create_capability("restyle-pinned", spec_pinned)
    claim = naming.cache_claim_name(parse_spec(spec_main))
    assert naming.cache_claim_name(parse_spec(spec_pinned)) == claim
    jobs = {
        naming.prefetch_job_name(parse_spec(s)): c["metadata"]["uid"]
        for s, c in ((spec_main, main), (spec_pinned, pinned))
    }
    assert len(jobs) == 2

    async def converged() -> bool:
        pvc = await cluster.get("v1", "PersistentVolumeClaim", claim)
        if pvc is None or len(pvc["metadata"].get("ownerReferences", [])) != 2:
            return False
        if pvc["spec"]["resources"]["requests"]["storage"] != "8Gi":
            return False
        for job_name, uid in jobs.items():
            job = await cluster.get("batch/v1", "Job", job_name)
            if job is None or [r["uid"] for r in job["metadata"]["ownerReferences"]] != [uid]:
                return False
        return True

    await wait_for(converged, what="a shared 8Gi claim and one Job per revision, each owned by its own user")
    assert len(await cluster.list("v1", "PersistentVolumeClaim")) == 1


async def test_cross_field_rules_are_enforced_without_the_api_server(
    cluster: Cluster, operator, orch
) -> None:
    """The API double runs no CEL: the operator applies the CRD's rules itself and creates nothing."""
    await operator()
    spec = byoc_spec(orch.url, capability={"name": "no-pipeline", "integration": "aiModels"})
    await cluster.create_capability("no-pipeline", spec)
    cond = await cluster.wait_condition("no-pipeline", "SpecValid", "InvalidSpec")
    assert "capability.pipeline is required when integration is aiModels" in cond["message"]
    assert (await cluster.status("no-pipeline"))["phase"] == "Failed"
    assert await cluster.list("batch/v1", "Job") == []


async def test_multi_node_access_mode_on_a_block_storage_class_is_refused(
    cluster: Cluster, operator, orch
) -> None:
    """A ReadWriteMany claim on an EBS class would stay Pending forever: say why, create nothing."""
    await operator()
    await cluster.create_storage_class("gp3", provisioner="ebs.csi.aws.com")
    spec = byoc_spec(
        orch.url, cache={"size": "5Gi", "storageClassName": "gp3", "accessModes": ["ReadWriteMany"]}
    )
    await cluster.create_capability("shared-cache", spec)
    cond = await cluster.wait_condition("shared-cache", "SpecValid", "AccessModeUnsupported")
    assert "ebs.csi.aws.com" in cond["message"] and "ReadWriteMany" in cond["message"]
    assert await cluster.list("v1", "PersistentVolumeClaim") == []
