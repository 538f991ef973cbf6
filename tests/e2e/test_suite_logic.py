"""The e2e suite's own logic, exercised without a cluster: skip detection, status parsing
(against the operator's real policy output), waiting (against kmock), job payloads,
manifests and port-forward parsing. These run in `make test`; the cluster tests do not."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydantic
import pytest
from lpbyoc.policy import (
    DeploymentObserved,
    Observed,
    SchedulingProblem,
    compute_conditions,
    compute_phase,
    desired_status,
)
from lpbyoc.view import ConditionResult

from tests.e2e import manifests
from tests.e2e.config import E2EConfig
from tests.e2e.jobs import check_job_answer, livepeer_header, sample_png, worker_job
from tests.e2e.kubectl import Kubectl, forwarded_port
from tests.e2e.prerequisites import CommandResult, missing_prerequisites
from tests.e2e.status import describe, is_ready, is_waiting_for_gpu
from tests.e2e.waiting import GaveUp, WaitTimeout, wait_for, wait_for_absence
from tests.e2e.workload import adapter_capacity
from tests.support.kube import Cluster, cluster  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "byoc-image-restyle.yaml"


# -- skip detection --------------------------------------------------------------------------


class FakeHost:
    """Stands in for the host's commands (no Docker or kind here); records what was run."""

    def __init__(self, tools: set[str], results: dict[str, CommandResult]) -> None:
        self.tools = tools
        self.results = results
        self.ran: list[str] = []

    def which(self, tool: str) -> str | None:
        return f"/usr/bin/{tool}" if tool in self.tools else None

    def run(self, argv: Sequence[str]) -> CommandResult:
        self.ran.append(" ".join(argv))
        return self.results.get(argv[0] + " " + argv[1], CommandResult(0))


ALL_TOOLS = {"docker", "kind", "kubectl", "helm"}
DAEMON_DOWN = CommandResult(
    1, "Server:\n", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
)


def test_docker_client_without_a_daemon_is_a_reason_to_skip() -> None:
    host = FakeHost(ALL_TOOLS, {"docker info": DAEMON_DOWN})
    reason = missing_prerequisites("lpbyoc", "kind-lpbyoc", run=host.run, which=host.which)
    assert reason == (
        "the Docker daemon does not answer `docker info`: "
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    )


@pytest.mark.parametrize(
    ("tools", "results", "expected"),
    [
        (ALL_TOOLS - {"docker"}, {}, "docker is not on PATH"),
        (ALL_TOOLS - {"kind"}, {}, "kind is not on PATH"),
        (ALL_TOOLS, {"kind get": CommandResult(0, "other\n")}, "no kind cluster named 'lpbyoc'"),
        (
            ALL_TOOLS,
            {
                "kind get": CommandResult(0, "lpbyoc\n"),
                "kubectl --context": CommandResult(1, "", "connection refused"),
            },
            "the API server of context 'kind-lpbyoc' does not answer: connection refused",
        ),
    ],
)
def test_each_missing_prerequisite_is_named(
    tools: set[str], results: dict[str, CommandResult], expected: str
) -> None:
    host = FakeHost(tools, results)
    reason = missing_prerequisites("lpbyoc", "kind-lpbyoc", run=host.run, which=host.which)
    assert reason is not None and reason.startswith(expected)


def test_a_live_cluster_means_no_skip() -> None:
    host = FakeHost(ALL_TOOLS, {"kind get": CommandResult(0, "lpbyoc\nother\n")})
    assert missing_prerequisites("lpbyoc", "kind-lpbyoc", run=host.run, which=host.which) is None
    assert host.ran[0].startswith("docker info")


def test_config_from_env() -> None:
    config = E2EConfig.from_env({"LPBYOC_E2E_NAMESPACE": "ns1", "LPBYOC_E2E_READY_TIMEOUT": "60"})
    assert config.namespace == "ns1" and config.ready_timeout == 60.0
    assert (
        config.orchestrator == "https://lpbyoc-livepeer-byoc-operator-orchestrator.ns1.svc.cluster.local:8935"
    )
    with pytest.raises(ValueError, match="LPBYOC_E2E_READY_TIMEOUT must be a number"):
        E2EConfig.from_env({"LPBYOC_E2E_READY_TIMEOUT": "soon"})


# -- status parsing against what the operator writes -----------------------------------------


def operator_status(obs: Observed, generation: int = 1) -> dict[str, Any]:
    """The `.status` the operator's pure policy produces for an observation."""
    conds = compute_conditions(obs)
    conditions = [
        {"type": kind, "status": c.status, "reason": c.reason, "message": c.message}
        for kind, c in conds.items()
    ]
    return desired_status(
        obs,
        conditions,
        observed_generation=generation,
        endpoint="http://lpbyoc-x.ns.svc.cluster.local:8000",
        selector="livepeer.org/capability=x",
        resolved_revision="a" * 40,
        phase=compute_phase(conds, obs),
    )


CACHED = {
    "prefetch_state": "succeeded",
    "pvc_phase": "Bound",
    "prefetch_result": {"result": "Succeeded", "sha": "a" * 40},
}
SERVING = Observed(
    **CACHED,  # type: ignore[arg-type]
    deployment=DeploymentObserved(replicas=1, ready=1, available=1, updated=1),
    registered=ConditionResult("True", "Registered", "registered"),
)
NO_GPU = Observed(
    **CACHED,  # type: ignore[arg-type]
    deployment=DeploymentObserved(replicas=1),
    unschedulable=SchedulingProblem(
        "Unschedulable", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    ),
)


def cap_with(status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


def test_ready_is_read_from_the_operators_status() -> None:
    assert is_ready(cap_with(operator_status(SERVING)))
    assert not is_waiting_for_gpu(cap_with(operator_status(SERVING)))


def test_ready_for_an_older_generation_is_not_ready() -> None:
    assert not is_ready(cap_with(operator_status(SERVING, generation=1), generation=2))


def test_gpu_shortage_is_read_as_waiting_for_gpu() -> None:
    status = operator_status(NO_GPU)
    assert is_waiting_for_gpu(cap_with(status))
    assert not is_ready(cap_with(status))
    assert "Insufficient nvidia.com/gpu" in describe(cap_with(status))


def test_other_scheduling_problems_are_not_waiting_for_gpu() -> None:
    obs = Observed(
        **CACHED,  # type: ignore[arg-type]
        deployment=DeploymentObserved(replicas=1),
        unschedulable=SchedulingProblem("Unschedulable", "0/2 nodes are available: 2 Insufficient memory."),
    )
    assert not is_waiting_for_gpu(cap_with(operator_status(obs)))


# -- waiting, against the kmock API double ----------------------------------------------------

SPEC = manifests.load_example(EXAMPLE)["spec"]


async def test_wait_for_returns_once_the_status_turns_ready(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_capability("lp", SPEC)

    async def operator_goes_ready() -> None:
        await asyncio.sleep(0.2)
        await cluster.kube.patch_status(
            "livepeer.org/v1alpha1", "LivepeerCapability", "lp", cluster.namespace, operator_status(NO_GPU)
        )
        await asyncio.sleep(0.2)
        await cluster.kube.patch_status(
            "livepeer.org/v1alpha1", "LivepeerCapability", "lp", cluster.namespace, operator_status(SERVING)
        )

    seen: list[str] = []

    async def fetch() -> dict[str, Any] | None:
        obj = await cluster.capability("lp")
        seen.append(str((obj or {}).get("status", {}).get("phase")))
        return obj

    writer = asyncio.create_task(operator_goes_ready())
    ready = await wait_for(fetch, is_ready, what="lp Ready", within=10, interval=0.05)
    await writer
    assert ready["status"]["readyReplicas"] == 1
    assert seen[0] == "None" and "Deploying" in seen and seen[-1] == "Ready"


async def test_wait_for_times_out_with_the_last_status(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_capability("lp", SPEC)
    await cluster.kube.patch_status(
        "livepeer.org/v1alpha1", "LivepeerCapability", "lp", cluster.namespace, operator_status(NO_GPU)
    )
    with pytest.raises(WaitTimeout) as err:
        await wait_for(lambda: cluster.capability("lp"), is_ready, what="lp Ready", within=0.3, interval=0.05)
    assert "WorkerAvailable=False WaitingForGPU" in str(err.value)


async def test_a_failed_capability_stops_the_wait_early(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_capability("lp", SPEC)
    failed = operator_status(Observed(spec_error="model.repo: no such repo"))
    await cluster.kube.patch_status(
        "livepeer.org/v1alpha1", "LivepeerCapability", "lp", cluster.namespace, failed
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(GaveUp, match="InvalidSpec"):
        await wait_for(lambda: cluster.capability("lp"), is_ready, what="lp Ready", within=30, interval=0.05)
    assert asyncio.get_running_loop().time() - started < 5


async def test_wait_for_absence_sees_the_deletion(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_capability("lp", SPEC)

    async def delete_soon() -> None:
        await asyncio.sleep(0.2)
        await cluster.delete_capability("lp")

    deleter = asyncio.create_task(delete_soon())
    await wait_for_absence(lambda: cluster.capability("lp"), what="lp", within=10, interval=0.05)
    await deleter
    assert await cluster.capability("lp") is None


# -- jobs ----------------------------------------------------------------------------------------


def test_worker_job_carries_the_image_and_the_bearer_token() -> None:
    png = sample_png(32, 24)
    path, headers, body = worker_job(png, "s3cret")
    assert path == "/v1/infer"
    assert headers == {"Content-Type": "application/json", "Authorization": "Bearer s3cret"}
    payload = json.loads(body)
    assert base64.b64decode(payload["image"]) == png and payload["params"] == {"format": "png"}
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (24, 32, 3) and decoded.std() > 10  # a gradient, not a constant
    assert "Authorization" not in worker_job(png, None)[1]


def test_job_body_matches_the_adapters_published_schema() -> None:
    """The adapter's own input schema (worker package) accepts what the suite sends."""
    schema_module = pytest.importorskip("lpbyoc_worker.adapter.schema")
    _, _, body = worker_job(sample_png(), None)
    schema_module.validate_job_input(json.loads(body))


def test_livepeer_header_nests_json_strings() -> None:
    header = livepeer_header("image-restyle", {"a": 1}, {"b": 2}, 30)
    decoded = json.loads(base64.b64decode(header))
    assert decoded == {
        "request": '{"a": 1}',
        "parameters": '{"b": 2}',
        "capability": "image-restyle",
        "timeout_seconds": 30,
    }


def answer(width: int, height: int, **extra: Any) -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    body = {
        "image": base64.b64encode(png.tobytes()).decode(),
        "content_type": "image/png",
        "width": width,
        "height": height,
    }
    return json.dumps({**body, **extra}).encode()


def test_job_answer_checks() -> None:
    assert check_job_answer(200, answer(32, 24, capability="c"), "c", (32, 24))["width"] == 32
    with pytest.raises(AssertionError, match="answered 503"):
        check_job_answer(503, b'{"detail": {"msg": "not ready"}}', "c", (32, 24))
    with pytest.raises(AssertionError):
        check_job_answer(200, answer(16, 16), "c", (32, 24))
    with pytest.raises(AssertionError):
        check_job_answer(200, answer(32, 24, capability="other"), "c", (32, 24))


# -- manifests and kubectl ----------------------------------------------------------------------


def test_e2e_capability_points_the_example_at_this_cluster() -> None:
    example = manifests.load_example(EXAMPLE)
    cap = manifests.e2e_capability(
        example,
        name="e2e-x",
        orchestrator_url="https://orch.ns.svc.cluster.local:8935",
        gpu_count=16,
        replicas=1,
    )
    assert cap["metadata"] == {"name": "e2e-x"}
    assert cap["spec"]["orchestrator"]["url"] == "https://orch.ns.svc.cluster.local:8935"
    assert cap["spec"]["gpu"]["count"] == 16 and cap["spec"]["replicas"] == 1
    assert example["spec"]["gpu"]["count"] == 1, "the example itself is left alone"


def test_e2e_capability_refuses_what_the_api_server_would() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"gpu\.count"):
        manifests.e2e_capability(manifests.load_example(EXAMPLE), gpu_count=17)


def test_manifest_command_line_prints_an_appliable_capability(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert manifests.main([str(EXAMPLE), "--orchestrator-url", "https://o:8935", "--replicas", "1"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (
        printed["kind"] == "LivepeerCapability" and printed["spec"]["orchestrator"]["url"] == "https://o:8935"
    )


@pytest.mark.parametrize(
    ("line", "port"),
    [
        ("Forwarding from 127.0.0.1:41234 -> 8000\n", 41234),
        ("Forwarding from [::1]:41234 -> 8000", 41234),
        ("Handling connection for 41234", None),
    ],
)
def test_port_forward_line(line: str, port: int | None) -> None:
    assert forwarded_port(line) == port


def test_kubectl_always_names_context_and_namespace() -> None:
    argv = Kubectl(context="kind-lpbyoc", namespace="lpbyoc-e2e").argv("get", "pods")
    assert argv == ["kubectl", "--context", "kind-lpbyoc", "--namespace", "lpbyoc-e2e", "get", "pods"]


def test_adapter_capacity_is_read_from_the_operators_worker_deployment() -> None:
    from lpbyoc.builders import BuildContext, build_worker_deployment
    from lpbyoc.spec import parse_spec

    spec = parse_spec({**SPEC, "capacityPerReplica": 3})
    deployment = build_worker_deployment(
        BuildContext(namespace="ns", name="x", uid="u1", spec=spec, resolved_revision="a" * 40)
    )
    assert adapter_capacity(deployment) == 3
    deployment["spec"]["template"]["spec"]["containers"] = [{"name": "other", "args": []}]
    assert adapter_capacity(deployment) is None
