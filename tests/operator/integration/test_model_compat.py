"""The operator knows what it is serving: status.model from the prefetch result, and no worker
Deployment (so no GPU requested) for a model that cannot serve the capability.

The real kopf operator against the kmock API double; the prefetch pod's termination message is
what the real prefetcher writes (its "model" block is runtimes.detect's SnapshotInfo JSON).
"""

from __future__ import annotations

from typing import Any

import pytest
from lpbyoc import naming
from lpbyoc.spec import parse_spec

from tests.operator.integration.conftest import byoc_spec
from tests.support.kube import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("with_orch_secret")

SHA = "0123456789abcdef0123456789abcdef01234567"
WORKER = naming.worker_name("restyle")
WHISPER = {
    "format": "transformers",
    "className": "WhisperForConditionalGeneration",
    "architectures": ["WhisperForConditionalGeneration"],
    "modelType": "whisper",
    "weightBytes": 151_061_672,
    "weightDtype": "F32",
    "tasks": ["audio-to-text"],
    "problems": [],
    "libraryName": "transformers",
    "pipelineTag": "automatic-speech-recognition",
}


def succeeded(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "result": "Succeeded",
        "reason": "Succeeded",
        "message": "downloaded",
        "sha": SHA,
        "bytes": 151_100_000,
        "files": 9,
        "bytesDownloaded": 151_100_000,
        "model": model,
    }


def whisper_spec(orch_url: str, pipeline: str) -> dict[str, Any]:
    spec = byoc_spec(orch_url)
    spec["capability"] = {"name": "restyle", "integration": "byoc", "pipeline": pipeline}
    spec["model"] = {"repo": "openai/whisper-tiny", "revision": "main"}
    return spec


async def start(cluster: Cluster, operator, spec: dict[str, Any]) -> str:
    await operator()
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")
    await cluster.finish_job(job_name, succeeded(WHISPER))
    return job_name


def command(deployment: dict[str, Any], name: str) -> list[str]:
    pod = deployment["spec"]["template"]["spec"]
    return next(c for c in [*pod["initContainers"], *pod["containers"]] if c["name"] == name)["command"]


async def test_incompatible_model_fails_before_any_worker_then_a_compatible_pipeline_recovers(
    cluster: Cluster, operator, orch
) -> None:
    await start(cluster, operator, whisper_spec(orch.url, "image-to-image"))

    status = await cluster.wait_phase("restyle", "Failed")
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["WeightsCached"]["status"], conds["WeightsCached"]["reason"]) == ("True", "Cached")
    ready = conds["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ModelIncompatible")
    assert (
        "transformers WhisperForConditionalGeneration cannot serve image-to-image (it serves: audio-to-text)"
        in ready["message"]
    )
    assert status["model"] == {
        "format": "transformers",
        "className": "WhisperForConditionalGeneration",
        "task": "image-to-image",
        "tasks": ["audio-to-text"],
        "weightBytes": 151_061_672,
        "weightDtype": "F32",
    }
    await cluster.quiet(for_s=1.5)
    assert await cluster.get("apps/v1", "Deployment", WORKER) is None  # no pod, no GPU asked for

    await cluster.patch_capability_spec(
        "restyle", {"capability": {"name": "restyle", "integration": "byoc", "pipeline": "audio-to-text"}}
    )
    deployment = await wait_for(lambda: cluster.get("apps/v1", "Deployment", WORKER), what="the Deployment")
    init, adapter = command(deployment, "model-repo"), command(deployment, "adapter")
    assert init[init.index("--task") + 1] == "audio-to-text" == adapter[adapter.index("--task") + 1]
    status = await cluster.wait_phase("restyle", "Deploying")
    assert status["model"]["task"] == "audio-to-text"
    ready = await cluster.condition("restyle", "Ready")
    assert ready["reason"] != "ModelIncompatible"


async def test_compatible_model_sets_status_model_and_a_breaking_change_removes_the_worker(
    cluster: Cluster, operator, orch
) -> None:
    await start(cluster, operator, whisper_spec(orch.url, "audio-to-text"))
    await wait_for(lambda: cluster.get("apps/v1", "Deployment", WORKER), what="the Deployment")
    status = await cluster.wait_phase("restyle", "Deploying")
    assert status["model"]["className"] == "WhisperForConditionalGeneration"

    spec = whisper_spec(orch.url, "audio-to-text")
    await cluster.patch_capability_spec("restyle", {"serving": {"task": "depth-estimation"}})
    status = await cluster.wait_phase("restyle", "Failed")
    assert "cannot serve depth-estimation" in {c["type"]: c for c in status["conditions"]}["Ready"]["message"]

    async def deployment_gone() -> bool:
        return await cluster.get("apps/v1", "Deployment", WORKER) is None

    await wait_for(deployment_gone, what="the worker Deployment deleted")
    # The prefetch Job is untouched: the weights stay cached for the fixed spec.
    assert await cluster.get("batch/v1", "Job", naming.prefetch_job_name(parse_spec(spec))) is not None


async def test_a_result_without_a_model_block_keeps_the_old_behaviour(
    cluster: Cluster, operator, orch
) -> None:
    await operator()
    spec = byoc_spec(orch.url)
    await cluster.create_capability("restyle", spec)
    job_name = naming.prefetch_job_name(parse_spec(spec))
    await wait_for(lambda: cluster.get("batch/v1", "Job", job_name), what="the prefetch Job")
    await cluster.finish_job(job_name, {"result": "Succeeded", "reason": "Succeeded", "sha": SHA})
    await wait_for(lambda: cluster.get("apps/v1", "Deployment", WORKER), what="the Deployment")
    status = await cluster.wait_phase("restyle", "Deploying")
    assert "model" not in status
