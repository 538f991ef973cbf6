"""The real kopf operator against the kmock API double: a capability from creation to Ready.

Mocked: the kubelet and the Job/Deployment controllers (the tests write the status they would
write), and the Hugging Face download (the prefetch pod's termination message is written by
the test). The orchestrator is the go-livepeer double on loopback.
"""

from __future__ import annotations

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
    assert command[:6] == ["lpbyoc-worker", "prefetch", "--repo", "livepeer-byoc/restyle", "--revision", "main"]
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

    await cluster.finish_job(job_name, {"result": "Succeeded", "reason": "Succeeded", "sha": SHA, "bytes": 10, "files": 1})
    worker = naming.worker_name("restyle")
    deployment = await wait_for(lambda: cluster.get("apps/v1", "Deployment", worker), what="the worker Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert naming.weights_dir("livepeer-byoc/restyle", SHA) in init["command"]
    assert (await cluster.status("restyle"))["phase"] == "Deploying"

    await cluster.add_worker_pod("restyle")
    await cluster.make_deployment_available(worker, replicas=1)
    status = await cluster.wait_phase("restyle", "Ready")

    assert status["resolvedRevision"] == SHA
    assert status["readyReplicas"] == 1
    assert status["endpoint"] == f"http://{worker}.default.svc.cluster.local:8000"
    assert status["progress"] == "100%"
    assert orch.capabilities["restyle"].body["capacity"] == 2
