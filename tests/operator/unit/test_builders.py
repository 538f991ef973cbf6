"""The pure child builders: shapes from docs/architecture.md, valid Kubernetes objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
from lpbyoc import builders, naming
from lpbyoc.builders import BuildContext
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import parse_spec

from .conftest import BYOC_BODY, with_changes

SHA = "0123456789abcdef0123456789abcdef01234567"


def ctx_with(changes: dict[str, Any] | None = None, **kwargs: Any) -> BuildContext:
    body = with_changes(BYOC_BODY, {f"spec.{k}": v for k, v in (changes or {}).items()})
    kwargs.setdefault("resolved_revision", SHA)
    return BuildContext(
        namespace="ml", name="restyle", uid="uid-restyle", spec=parse_spec(body["spec"]), **kwargs
    )


def all_containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in all_containers(obj) if c["name"] == name)


CONTEXTS = {
    "byoc-default": ctx_with(),
    "cpu-only": ctx_with({"gpu.count": 0}),
    "aimodels-product": ctx_with(
        {
            "capability.integration": "aiModels",
            "capability.pipeline": "image-to-image",
            "gpu.product": "NVIDIA-A100",
            "serving.tokenSecretRef": {"name": "tok", "key": "t"},
        }
    ),
    "live-runner-mig": ctx_with(
        {
            "capability.integration": "liveRunner",
            "gpu.resourceName": "nvidia.com/mig-1g.10gb",
            "env": [{"name": "A", "value": "1"}],
            "model.tokenSecretRef": {"name": "hf", "key": "token"},
        }
    ),
    "existing-claim-retained": ctx_with({"cache.existingClaim": "weights", "cache.retainOnDelete": True}),
    "long-name": BuildContext("ml", "n" * 200, "uid-long", ctx_with().spec, resolved_revision=SHA),
}
BUILDERS: dict[str, Callable[[BuildContext], dict[str, Any] | None]] = {
    "pvc": builders.build_cache_pvc,
    "job": builders.build_prefetch_job,
    "deployment": builders.build_worker_deployment,
    "service": builders.build_worker_service,
}


@pytest.mark.parametrize("builder", BUILDERS.values(), ids=BUILDERS.keys())
@pytest.mark.parametrize("ctx", CONTEXTS.values(), ids=CONTEXTS.keys())
@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_every_built_object_is_a_valid_kubernetes_object(
    builder: Callable[[BuildContext], dict[str, Any] | None], ctx: BuildContext, version: str
) -> None:
    obj = builder(ctx)
    if obj is None:
        return
    kubernetes_validate.validate(obj, version, strict=True)
    assert obj["metadata"]["namespace"] == "ml"
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "lpbyoc"
    assert labels["app.kubernetes.io/part-of"] == "livepeer-byoc"
    assert all(len(v) <= 63 for v in labels.values())


@pytest.mark.parametrize("builder", [builders.build_prefetch_job, builders.build_worker_deployment])
@pytest.mark.parametrize("ctx", CONTEXTS.values(), ids=CONTEXTS.keys())
def test_every_container_is_hardened(
    builder: Callable[[BuildContext], dict[str, Any]], ctx: BuildContext
) -> None:
    obj = builder(ctx)
    pod = obj["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["fsGroup"] == 1000
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    for c in all_containers(obj):
        sc = c["securityContext"]
        assert (sc["runAsNonRoot"], sc["runAsUser"], sc["readOnlyRootFilesystem"]) == (True, 1000, True), c[
            "name"
        ]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        for var in c.get("env", []):
            assert ("TOKEN" not in var["name"] and "SECRET" not in var["name"]) or "secretKeyRef" in var[
                "valueFrom"
            ]


def test_prefetch_job_spec() -> None:
    ctx = ctx_with(
        {
            "model.revision": "v1",
            "model.allowPatterns": ["*.pt", "*.json"],
            "model.ignorePatterns": ["*.bin"],
            "model.tokenSecretRef": {"name": "hf", "key": "token"},
        },
        settings=OperatorSettings(hf_endpoint="http://hub:8080", prefetch_image="reg/w:2"),
    )
    job = builders.build_prefetch_job(ctx)
    assert job["metadata"]["name"] == naming.prefetch_job_name(ctx.spec)
    spec = job["spec"]
    assert spec["backoffLimit"] == 2
    assert "activeDeadlineSeconds" not in spec and "ttlSecondsAfterFinished" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["image"] == "reg/w:2"
    assert c["command"] == [
        "lpbyoc-worker",
        "prefetch",
        "--repo",
        "org/restyle",
        "--revision",
        "v1",
        "--allow",
        "*.pt",
        "--allow",
        "*.json",
        "--ignore",
        "*.bin",
        "--cache-dir",
        "/cache",
        "--progress-port",
        "9090",
        "--stall-timeout",
        "60",
        "--max-retries",
        "5",
    ]
    assert c["ports"] == [{"name": "progress", "containerPort": 9090, "protocol": "TCP"}]
    assert (c["terminationMessagePolicy"], c["terminationMessagePath"]) == ("File", "/dev/termination-log")
    env = env_of(c)
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["HF_ENDPOINT"] == "http://hub:8080"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert {"name": "cache", "mountPath": "/cache"} in c["volumeMounts"]
    assert {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": naming.cache_claim_name(ctx.spec)},
    } in pod["volumes"]


def test_prefetch_job_without_token_or_endpoint_sets_neither() -> None:
    env = env_of(builders.build_prefetch_job(ctx_with())["spec"]["template"]["spec"]["containers"][0])
    assert "HF_TOKEN" not in env and "HF_ENDPOINT" not in env


@pytest.mark.parametrize(
    ("changes", "limit", "kind", "gpu_toleration"),
    [
        ({}, {"nvidia.com/gpu": 1}, "KIND_GPU", True),
        (
            {
                "gpu.count": 2,
                "gpu.resourceName": "nvidia.com/mig-1g.10gb",
                "gpu.tolerations": [{"key": "nvidia.com/mig-1g.10gb", "operator": "Exists"}],
            },
            {"nvidia.com/mig-1g.10gb": 2},
            "KIND_GPU",
            True,
        ),
        ({"gpu.count": 0}, {}, "KIND_CPU", False),
    ],
)
def test_gpu_limit_kind_and_toleration(
    changes: dict[str, Any], limit: dict[str, int], kind: str, gpu_toleration: bool
) -> None:
    ctx = ctx_with(changes)
    dep = builders.build_worker_deployment(ctx)
    limits = container(dep, "triton")["resources"].get("limits", {})
    gpu_limits = {k: v for k, v in limits.items() if "/" in k}
    assert gpu_limits == limit
    assert container(dep, "model-repo")["command"][-2:] == ["--kind", kind]
    tolerated = [t["key"] for t in dep["spec"]["template"]["spec"].get("tolerations", [])]
    assert (ctx.spec.gpu.resource_name in tolerated) is gpu_toleration


def test_product_and_node_selector() -> None:
    dep = builders.build_worker_deployment(
        ctx_with({"gpu.product": "NVIDIA-H100", "gpu.nodeSelector": {"pool": "gpu"}})
    )
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-H100",
    }
    assert "nodeSelector" not in builders.build_worker_deployment(ctx_with())["spec"]["template"]["spec"]


def test_deployment_spec() -> None:
    ctx = ctx_with(
        {
            "replicas": 3,
            "capacityPerReplica": 2,
            "serving.port": 9000,
            "serving.tokenSecretRef": {"name": "w", "key": "t"},
            "env": [{"name": "MODE", "value": "fast"}],
            "serving.triton.maxBatchSize": 16,
        }
    )
    dep = builders.build_worker_deployment(ctx)
    spec = dep["spec"]
    assert dep["metadata"]["name"] == "lpbyoc-restyle"
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert [c["name"] for c in all_containers(dep)] == ["model-repo", "triton", "adapter"]
    init = container(dep, "model-repo")
    assert init["command"][:4] == [
        "lpbyoc-worker",
        "model-repo",
        "--weights-dir",
        f"/cache/models/org--restyle/{SHA}",
    ]
    serving = init["command"][init["command"].index("--serving-json") + 1]
    assert '"maxBatchSize":16' in serving
    assert container(dep, "triton")["command"] == ["lpbyoc-worker", "triton", "--model-repository", "/models"]
    adapter = container(dep, "adapter")
    assert adapter["command"] == [
        "lpbyoc-worker",
        "serve",
        "--port",
        "9000",
        "--triton-grpc",
        "127.0.0.1:8011",
        "--model-name",
        "model",
        "--capacity",
        "2",
        "--capability",
        "restyle",
        "--model-id",
        "org/restyle",
        "--max-body-bytes",
        "16777216",
    ]
    assert adapter["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert adapter["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert adapter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = adapter["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    env = env_of(adapter)
    assert env["AUTH_TOKEN"] == {"secretKeyRef": {"name": "w", "key": "t"}}
    assert env["MODE"] == "fast" and env_of(container(dep, "triton"))["MODE"] == "fast"
    cache_mounts = [m for c in all_containers(dep) for m in c["volumeMounts"] if m["name"] == "cache"]
    assert cache_mounts and all(m["readOnly"] for m in cache_mounts)
    assert container(dep, "triton")["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


def test_pipeline_flag_only_when_set() -> None:
    cmd = container(
        builders.build_worker_deployment(
            ctx_with(
                {
                    "capability.integration": "aiModels",
                    "capability.pipeline": "image-to-image",
                    "capability.modelId": "sd",
                }
            )
        ),
        "adapter",
    )["command"]
    assert cmd[cmd.index("--pipeline") + 1] == "image-to-image"
    assert cmd[cmd.index("--model-id") + 1] == "sd"


def test_task_and_variant_reach_model_repo_and_adapter() -> None:
    def commands(ctx: BuildContext) -> tuple[list[str], list[str]]:
        dep = builders.build_worker_deployment(ctx)
        return container(dep, "model-repo")["command"], container(dep, "adapter")["command"]

    init, adapter = commands(ctx_with({"capability.pipeline": "image-to-image", "model.variant": "fp16"}))
    assert init[init.index("--task") + 1] == "image-to-image" == adapter[adapter.index("--task") + 1]
    assert init[init.index("--variant") + 1] == "fp16" and "--variant" not in adapter
    # serving.task names the task when the pipeline does not (live video, byoc).
    init, adapter = commands(
        ctx_with({"capability.pipeline": "live-video-to-video", "serving.task": "depth-estimation"})
    )
    assert init[init.index("--task") + 1] == "depth-estimation" == adapter[adapter.index("--task") + 1]
    # The task the recorded model settled (its only one) when the spec names none.
    init, adapter = commands(ctx_with(task="depth-estimation"))
    assert init[init.index("--task") + 1] == "depth-estimation" == adapter[adapter.index("--task") + 1]
    # Nothing known: no flag (TorchScript byoc as before).
    init, adapter = commands(ctx_with())
    assert "--task" not in init and "--task" not in adapter and "--variant" not in init


def test_variant_goes_to_the_prefetch_job_and_names_another_job() -> None:
    plain = ctx_with()
    fp16 = ctx_with({"model.variant": "fp16"})
    command = builders.build_prefetch_job(fp16)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--variant") + 1] == "fp16"
    assert "--variant" not in builders.prefetch_command(plain)
    assert naming.prefetch_job_name(fp16.spec) != naming.prefetch_job_name(plain.spec)


def test_serving_json_carries_the_new_model_formats() -> None:
    import json

    from lpbyoc_worker.modelrepo.serving import parse_serving

    for fmt in ("diffusers", "transformers"):
        ctx = ctx_with({"serving.triton": {"modelFormat": fmt}})
        text = builders.serving_json(ctx.spec)
        assert json.loads(text)["modelFormat"] == fmt
        assert parse_serving(text).model_format == fmt  # the worker reads what the operator writes


def test_live_runner_pods_get_their_ip_and_orch_secret_by_reference() -> None:
    env = env_of(
        container(
            builders.build_worker_deployment(ctx_with({"capability.integration": "liveRunner"})), "adapter"
        )
    )
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["ORCH_SECRET"] == {"secretKeyRef": {"name": "orch-secret", "key": "secret"}}
    byoc_env = env_of(container(builders.build_worker_deployment(ctx_with()), "adapter"))
    assert "ORCH_SECRET" not in byoc_env  # byoc: the operator registers, the secret stays with it


def test_serving_hash_changes_with_what_is_served_only() -> None:
    def template_hash(ctx: BuildContext) -> str:
        return builders.build_worker_deployment(ctx)["spec"]["template"]["metadata"]["annotations"][
            naming.SERVING_HASH_ANNOTATION
        ]

    base = template_hash(ctx_with())
    assert template_hash(ctx_with({"serving.triton.maxBatchSize": 2})) != base
    assert template_hash(ctx_with(resolved_revision="f" * 40)) != base
    assert template_hash(ctx_with({"replicas": 5})) == base
    assert template_hash(ctx_with({"serving.task": "depth-estimation"})) != base
    assert template_hash(ctx_with({"model.variant": "fp16"})) != base


def test_deployment_needs_the_resolved_revision() -> None:
    with pytest.raises(ValueError, match="resolved revision"):
        builders.build_worker_deployment(ctx_with(resolved_revision=None))


def test_service_spec() -> None:
    svc = builders.build_worker_service(ctx_with({"serving.port": 8100}))
    assert svc["metadata"]["name"] == "lpbyoc-restyle"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8100, "targetPort": "http", "protocol": "TCP"}]
    assert (
        svc["spec"]["selector"]
        == builders.build_worker_deployment(ctx_with())["spec"]["selector"]["matchLabels"]
    )


def test_per_capability_children_have_one_controller_owner() -> None:
    for obj in (builders.build_worker_deployment(ctx_with()), builders.build_worker_service(ctx_with())):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "livepeer.org/v1alpha1",
                "kind": "LivepeerCapability",
                "name": "restyle",
                "uid": "uid-restyle",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_shared_cache_children_list_every_user_sorted_without_controller() -> None:
    ctx = ctx_with(cache_users=(("zeta", "uid-z"), ("alpha", "uid-a")))
    for obj in (builders.build_cache_pvc(ctx), builders.build_prefetch_job(ctx)):
        assert obj is not None
        refs = obj["metadata"]["ownerReferences"]
        assert [(r["name"], r["uid"]) for r in refs] == [
            ("alpha", "uid-a"),
            ("restyle", "uid-restyle"),
            ("zeta", "uid-z"),
        ]
        assert all(r["controller"] is False and r["blockOwnerDeletion"] is True for r in refs)
        assert obj["metadata"]["labels"][naming.CACHE_KEY_LABEL] == naming.cache_key(ctx.spec)


def test_prefetch_users_can_differ_from_cache_users() -> None:
    ctx = ctx_with(cache_users=(("a", "1"), ("b", "2")), prefetch_users=(("a", "1"),))
    refs = builders.build_prefetch_job(ctx)["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["a", "restyle"]


@pytest.mark.parametrize(
    "ctx",
    [
        ctx_with({"cache.retainOnDelete": True}),
        ctx_with(retain_cache=True, cache_users=(("other", "uid-o"),)),
    ],
    ids=["own-retain", "another-user-retains"],
)
def test_retained_cache_has_no_owner_references(ctx: BuildContext) -> None:
    pvc = builders.build_cache_pvc(ctx)
    assert pvc is not None and "ownerReferences" not in pvc["metadata"]
    assert builders.build_prefetch_job(ctx)["metadata"][
        "ownerReferences"
    ]  # the Job still goes with its users


def test_pvc_spec() -> None:
    pvc = builders.build_cache_pvc(
        ctx_with(
            {"cache.size": "50Gi", "cache.storageClassName": "fast", "cache.accessModes": ["ReadWriteMany"]}
        )
    )
    assert pvc is not None
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "50Gi"}},
        "volumeMode": "Filesystem",
        "storageClassName": "fast",
    }
    assert "storageClassName" not in (builders.build_cache_pvc(ctx_with()) or {})["spec"]


def test_existing_claim_means_no_pvc_and_the_worker_mounts_it() -> None:
    ctx = ctx_with({"cache.existingClaim": "weights"})
    assert builders.build_cache_pvc(ctx) is None
    volumes = builders.build_worker_deployment(ctx)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}} in volumes
    job_volumes = builders.build_prefetch_job(ctx)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "weights"}} in job_volumes


@pytest.mark.parametrize(
    ("weights_ready", "kinds"),
    [
        (False, ["PersistentVolumeClaim", "Job", "Service"]),
        (True, ["PersistentVolumeClaim", "Job", "Service", "Deployment"]),
    ],
)
def test_children_wait_for_weights(weights_ready: bool, kinds: list[str]) -> None:
    assert [o["kind"] for o in builders.build_children(ctx_with(), weights_ready)] == kinds


def test_builders_are_deterministic() -> None:
    assert builders.build_children(ctx_with(), True) == builders.build_children(ctx_with(), True)


@pytest.mark.parametrize(
    ("sizes", "largest"),
    [
        (["5Gi", "20Gi"], "20Gi"),
        (["20000Mi", "19Gi"], "20000Mi"),
        (["1073741824", "1Gi"], "1073741824"),
        (["500M", "1G"], "1G"),
    ],
)
def test_shared_claim_takes_the_largest_size(sizes: list[str], largest: str) -> None:
    assert builders.largest_quantity(sizes) == largest
    pvc = builders.build_cache_pvc(
        ctx_with({"cache.size": sizes[0]}, cache_size=builders.largest_quantity(sizes))
    )
    assert pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == largest


def test_fake_gpu_clusters_run_triton_on_the_cpu_but_still_request_the_gpu() -> None:
    """LPBYOC_TRITON_KIND=KIND_CPU (kind with advertised fake GPUs): scheduling is exercised, Triton uses the CPU."""
    ctx = ctx_with(settings=OperatorSettings(triton_kind="KIND_CPU"))
    dep = builders.build_worker_deployment(ctx)
    assert container(dep, "model-repo")["command"][-2:] == ["--kind", "KIND_CPU"]
    assert container(dep, "triton")["resources"]["limits"]["nvidia.com/gpu"] == 1
    with pytest.raises(ValueError, match="triton_kind"):
        OperatorSettings(triton_kind="KIND_GPU")  # type: ignore[arg-type]


def test_triton_and_adapter_share_a_memory_backed_dev_shm() -> None:
    dep = builders.build_worker_deployment(ctx_with())
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    for name in ("triton", "adapter"):
        mounts = {m["mountPath"]: m["name"] for m in container(dep, name)["volumeMounts"]}
        assert mounts["/dev/shm"] == "dshm"
    assert "/cache" in {m["mountPath"] for m in container(dep, "triton")["volumeMounts"]}


def test_live_runner_pods_heartbeat_with_price_and_the_orchestrator_ca() -> None:
    ctx = ctx_with(
        {
            "capability.integration": "liveRunner",
            "pricing.pricePerUnit": 3,
            "pricing.currency": "usd",
            "orchestrator.tls": {"caBundleSecretRef": {"name": "orch-ca", "key": "bundle.pem"}},
        }
    )
    dep = builders.build_worker_deployment(ctx)
    adapter = container(dep, "adapter")
    assert "--live-runner" in adapter["command"]
    env = env_of(adapter)
    assert (env["LIVE_RUNNER_PRICE"], env["LIVE_RUNNER_PRICE_CURRENCY"]) == ("3", "usd")
    ca_file = env["LIVE_RUNNER_CA_FILE"]
    mount = next(m for m in adapter["volumeMounts"] if m["name"] == "orchestrator-ca")
    assert ca_file.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "orchestrator-ca")
    assert volume["secret"] == {"secretName": "orch-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    byoc = container(builders.build_worker_deployment(ctx_with()), "adapter")
    assert "--live-runner" not in byoc["command"]
    assert not any(name.startswith("LIVE_RUNNER_") for name in env_of(byoc))
