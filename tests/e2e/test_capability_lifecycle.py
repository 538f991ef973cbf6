"""End to end on a kind cluster (`make kind-up` or `make kind-fake-gpu`, then `make images deploy`):
a capability goes Ready, serves a BYOC job through its Service, follows a spec change, and
leaves nothing behind when deleted; an impossible GPU request reports WaitingForGPU."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from lpbyoc.naming import worker_name

from tests.e2e.config import E2EConfig
from tests.e2e.jobs import check_job_answer, sample_png, worker_job
from tests.e2e.kubectl import CAPABILITIES, Kubectl
from tests.e2e.manifests import e2e_capability, load_example
from tests.e2e.status import describe, is_ready, is_waiting_for_gpu
from tests.e2e.waiting import wait_for, wait_for_absence
from tests.e2e.workload import adapter_capacity

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def capability_for(config: E2EConfig, suffix: str, **overrides: Any) -> dict[str, Any]:
    return e2e_capability(
        load_example(config.example),
        name=f"e2e-{suffix}-{uuid.uuid4().hex[:6]}",
        orchestrator_url=config.orchestrator,
        model_repo=config.model_repo or None,
        **overrides,
    )


async def test_capability_ready_serves_a_job_follows_a_change_and_is_deleted(
    kubectl: Kubectl, e2e_config: E2EConfig
) -> None:
    cap = capability_for(e2e_config, "life", replicas=1)
    name = cap["metadata"]["name"]

    def fetch() -> Any:
        return kubectl.get(CAPABILITIES, name)

    await kubectl.apply([cap])
    try:
        ready = await wait_for(fetch, is_ready, what=f"{name} Ready", within=e2e_config.ready_timeout)
        assert ready["status"]["readyReplicas"] == 1, describe(ready)

        serving = cap["spec"].get("serving", {})
        port = serving.get("port", 8000)
        token_ref = serving.get("tokenSecretRef")
        token = await kubectl.secret_value(token_ref["name"], token_ref["key"]) if token_ref else None
        path, headers, body = worker_job(sample_png(32, 24), token)
        async with (
            kubectl.port_forward(f"svc/{worker_name(name)}", port) as local_port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{local_port}", timeout=60) as client,
        ):
            answer = await client.post(path, headers=headers, content=body)
            check_job_answer(answer.status_code, answer.content, cap["spec"]["capability"]["name"], (32, 24))
            if token:
                wrong = {**headers, "Authorization": "Bearer wrong"}
                assert (await client.post(path, headers=wrong, content=body)).status_code == 401

        # A spec change that needs no second GPU: concurrency per replica. Ready again only once
        # the status describes the new generation, and the worker runs with the new capacity.
        new_capacity = int(cap["spec"].get("capacityPerReplica", 1)) + 1
        cap["spec"]["capacityPerReplica"] = new_capacity
        await kubectl.apply([cap])
        changed = await wait_for(
            fetch,
            lambda obj: is_ready(obj) and obj["metadata"]["generation"] > ready["metadata"]["generation"],
            what=f"{name} Ready at its new generation",
            within=e2e_config.ready_timeout,
        )
        deployment = await kubectl.get("deployment", worker_name(name))
        assert deployment is not None
        assert adapter_capacity(deployment) == new_capacity, describe(changed)
    finally:
        await kubectl.delete(CAPABILITIES, name)

    await wait_for_absence(fetch, what=name, within=300)

    def fetch_worker() -> Any:
        return kubectl.get("deployment", worker_name(name))

    await wait_for_absence(fetch_worker, what=f"deployment {worker_name(name)}", within=120)


async def test_an_unsatisfiable_gpu_request_reports_waiting_for_gpu(
    kubectl: Kubectl, e2e_config: E2EConfig
) -> None:
    cap = capability_for(e2e_config, "nogpu", gpu_count=16, replicas=1)
    name = cap["metadata"]["name"]

    def fetch() -> Any:
        return kubectl.get(CAPABILITIES, name)

    await kubectl.apply([cap])
    try:
        waiting = await wait_for(
            fetch, is_waiting_for_gpu, what=f"{name} WaitingForGPU", within=e2e_config.ready_timeout
        )
        assert not is_ready(waiting)
        pods = await kubectl.run(
            "get", "pods", "-l", f"livepeer.org/capability={name}", "-o", "jsonpath={.items[*].status.phase}"
        )
        assert "Pending" in pods[1].split(), pods
    finally:
        await kubectl.delete(CAPABILITIES, name)
    await wait_for_absence(fetch, what=name, within=300)
