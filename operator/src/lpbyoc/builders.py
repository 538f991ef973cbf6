"""Desired children of one capability, as plain dicts (docs/architecture.md, "Children").

Pure functions of a `BuildContext`: no API client, no clock, no randomness, so the same
inputs always produce the same objects and an idle reconcile has nothing to apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lightkube.utils.quantity import parse_quantity

from lpbyoc import compat, naming
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import API_VERSION, KIND, LivepeerCapabilitySpec, SecretKeyRef

RUN_AS_UID = 1000
PREFETCH_BACKOFF_LIMIT = 2
WORKER_PORT_NAME = "http"
PROGRESS_PORT_NAME = "progress"


@dataclass(frozen=True)
class BuildContext:
    namespace: str
    name: str
    uid: str
    spec: LivepeerCapabilitySpec
    generation: int = 1
    resolved_revision: str | None = None
    # (name, uid) of every capability sharing this cache claim, this one included.
    cache_users: tuple[tuple[str, str], ...] = ()
    retain_cache: bool = False
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    # (name, uid) of every capability sharing this prefetch Job; empty means the cache users.
    prefetch_users: tuple[tuple[str, str], ...] = ()
    # Size of a shared claim: the largest any user asks for (`largest_quantity`); None = this spec's.
    cache_size: str | None = None
    # The task the worker serves, when the recorded model settled it (lpbyoc.compat.judge); None =
    # what the spec says (serving.task, else the pipeline's).
    task: str | None = None

    @property
    def worker_task(self) -> str | None:
        return self.task or compat.spec_task(self.spec)

    def __post_init__(self) -> None:
        users = tuple(sorted({*self.cache_users, (self.name, self.uid)}))
        object.__setattr__(self, "cache_users", users)
        object.__setattr__(
            self, "prefetch_users", tuple(sorted({*(self.prefetch_users or users), (self.name, self.uid)}))
        )
        object.__setattr__(self, "retain_cache", self.retain_cache or self.spec.cache.retain_on_delete)


def largest_quantity(sizes: Iterable[str]) -> str:
    """The largest of some Kubernetes quantities, as written ("20Gi" over "5000Mi")."""

    def value(size: str) -> Decimal:
        parsed = parse_quantity(size)
        if parsed is None:
            raise ValueError(f"not a quantity: {size!r}")
        return parsed

    return max(sizes, key=value)


def owner_reference(name: str, uid: str, *, controller: bool) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _own_metadata(ctx: BuildContext, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ctx.namespace,
        "labels": naming.capability_labels(ctx.name, component),
        "ownerReferences": [owner_reference(ctx.name, ctx.uid, controller=True)],
    }


def _shared_metadata(
    ctx: BuildContext, name: str, component: str, owners: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    # Every user owns a shared child (controller=False) so GC removes it only with the last one.
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ctx.namespace,
        "labels": naming.cache_labels(ctx.spec, component),
    }
    if owners:
        meta["ownerReferences"] = [owner_reference(n, u, controller=False) for n, u in owners]
    return meta


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _hardened_container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "fsGroup": RUN_AS_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


ORCH_CA_MOUNT = "/etc/lpbyoc/orchestrator-ca"
ORCH_CA_FILE = "ca.crt"


def _shm_volume() -> dict[str, Any]:
    # Triton and the adapter pass tensors through POSIX shared memory: both need the same
    # /dev/shm, and the container runtime's default 64 MiB is too small for a batch of frames.
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}


def _shm_mount() -> dict[str, Any]:
    return {"name": "dshm", "mountPath": "/dev/shm"}


def _tmp_volume() -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {}}


def _tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": "/tmp"}


def build_cache_pvc(ctx: BuildContext) -> dict[str, Any] | None:
    """The weights PVC, or None when the spec names an existing claim."""
    cache = ctx.spec.cache
    if cache.existing_claim:
        return None
    spec: dict[str, Any] = {
        "accessModes": list(cache.access_modes),
        # A PVC can grow but never shrink: a shared claim is as large as its largest user asks.
        "resources": {"requests": {"storage": ctx.cache_size or cache.size}},
        "volumeMode": "Filesystem",
    }
    if cache.storage_class_name is not None:
        spec["storageClassName"] = cache.storage_class_name
    metadata = _shared_metadata(
        ctx, naming.cache_claim_name(ctx.spec), "cache", () if ctx.retain_cache else ctx.cache_users
    )
    metadata["annotations"] = {naming.MODEL_REPO_ANNOTATION: ctx.spec.model.repo}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def prefetch_command(ctx: BuildContext) -> list[str]:
    model = ctx.spec.model
    cmd = ["lpbyoc-worker", "prefetch", "--repo", model.repo, "--revision", model.revision]
    for pattern in model.allow_patterns:
        cmd += ["--allow", pattern]
    for pattern in model.ignore_patterns:
        cmd += ["--ignore", pattern]
    if model.variant:
        cmd += ["--variant", model.variant]
    cmd += [
        "--cache-dir",
        naming.CACHE_MOUNT,
        "--progress-port",
        str(ctx.settings.progress_port),
        "--stall-timeout",
        str(ctx.settings.prefetch_stall_timeout_s),
        "--max-retries",
        str(ctx.settings.prefetch_max_retries),
    ]
    return cmd


def _prefetch_env(ctx: BuildContext) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        # The root filesystem is read-only: the Hub client's own cache/config goes to /tmp.
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": "/tmp/hf-home"},
    ]
    if ctx.settings.hf_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": ctx.settings.hf_endpoint})
    if ctx.spec.model.token_secret_ref is not None:
        env.append(_secret_env("HF_TOKEN", ctx.spec.model.token_secret_ref))
    return env


def build_prefetch_job(ctx: BuildContext) -> dict[str, Any]:
    """The Job that downloads the pinned weights into the cache claim.

    No TTL and no deadline: the operator reads the terminated pod's result, and the
    prefetcher's own stall timeout bounds a hung download.
    """
    spec = ctx.spec
    metadata = _shared_metadata(ctx, naming.prefetch_job_name(spec), "prefetch", ctx.prefetch_users)
    metadata["annotations"] = {
        naming.MODEL_REPO_ANNOTATION: spec.model.repo,
        naming.MODEL_REVISION_ANNOTATION: spec.model.revision,
    }
    container = {
        "name": "prefetch",
        "image": ctx.settings.prefetch_image,
        "imagePullPolicy": spec.serving.image_pull_policy,
        "command": prefetch_command(ctx),
        "ports": [
            {"name": PROGRESS_PORT_NAME, "containerPort": ctx.settings.progress_port, "protocol": "TCP"}
        ],
        "env": _prefetch_env(ctx),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [{"name": "cache", "mountPath": naming.CACHE_MOUNT}, _tmp_mount()],
        "securityContext": _hardened_container_security(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {"name": "cache", "persistentVolumeClaim": {"claimName": naming.cache_claim_name(spec)}},
            _tmp_volume(),
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": PREFETCH_BACKOFF_LIMIT,
            "template": {"metadata": {"labels": naming.cache_labels(spec, "prefetch")}, "spec": pod_spec},
        },
    }


def triton_kind(ctx: BuildContext) -> str:
    if ctx.spec.gpu.count > 0 and ctx.settings.triton_kind == "auto":
        return "KIND_GPU"
    return "KIND_CPU"


def serving_json(spec: LivepeerCapabilitySpec) -> str:
    return json.dumps(
        spec.serving.triton.model_dump(by_alias=True, mode="json"), sort_keys=True, separators=(",", ":")
    )


def serving_hash(ctx: BuildContext) -> str:
    """Changes whenever what the pod serves changes, so a rollout is visible on the template.

    Fields added later (task, variant) count only when set: an upgrade alone rolls nothing."""
    serving = ctx.spec.serving.model_dump(by_alias=True, mode="json")
    serving.pop("task", None)
    parts: list[Any] = [ctx.resolved_revision, ctx.spec.model.repo, serving]
    if ctx.worker_task or ctx.spec.model.variant:
        parts.append({"task": ctx.worker_task, "variant": ctx.spec.model.variant})
    return naming.h(*parts)


def _resource_list(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _triton_resources(spec: LivepeerCapabilitySpec) -> dict[str, Any]:
    requests = _resource_list(spec.resources.requests.model_dump())
    limits = _resource_list(spec.resources.limits.model_dump())
    if spec.gpu.count > 0:
        limits[spec.gpu.resource_name] = spec.gpu.count
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _user_env(spec: LivepeerCapabilitySpec) -> list[dict[str, Any]]:
    return [{"name": e.name, "value": e.value} for e in spec.env]


def adapter_command(ctx: BuildContext) -> list[str]:
    spec = ctx.spec
    cmd = [
        "lpbyoc-worker",
        "serve",
        "--port",
        str(spec.serving.port),
        "--triton-grpc",
        naming.TRITON_GRPC,
        "--model-name",
        naming.TRITON_MODEL_NAME,
        "--capacity",
        str(spec.capacity_per_replica),
        "--capability",
        spec.capability.name,
    ]
    if spec.capability.pipeline is not None:
        cmd += ["--pipeline", spec.capability.pipeline]
    cmd += ["--model-id", spec.model_id, "--max-body-bytes", str(spec.serving.max_body_bytes)]
    if ctx.worker_task:
        cmd += ["--task", ctx.worker_task]
    if spec.capability.integration == "liveRunner":
        cmd.append("--live-runner")
    return cmd


def model_repo_extra_args(ctx: BuildContext) -> list[str]:
    """`--task` (what a diffusers/transformers snapshot serves) and `--variant` when known."""
    args: list[str] = []
    if ctx.worker_task:
        args += ["--task", ctx.worker_task]
    if ctx.spec.model.variant:
        args += ["--variant", ctx.spec.model.variant]
    return args


def _adapter_env(ctx: BuildContext) -> list[dict[str, Any]]:
    spec = ctx.spec
    env: list[dict[str, Any]] = []
    if spec.serving.token_secret_ref is not None:
        env.append(_secret_env("AUTH_TOKEN", spec.serving.token_secret_ref))
    if spec.capability.integration == "liveRunner":
        # Each pod heartbeats for itself with its own IP (docs/architecture.md, Orchestrator attachment).
        env.append({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        if spec.orchestrator.url:
            env.append({"name": "ORCH_URL", "value": spec.orchestrator.url})
        if spec.orchestrator.secret_ref is not None:
            env.append(_secret_env("ORCH_SECRET", spec.orchestrator.secret_ref))
        if spec.pricing.price_per_unit > 0:
            env.append({"name": "LIVE_RUNNER_PRICE", "value": str(spec.pricing.price_per_unit)})
            env.append({"name": "LIVE_RUNNER_PRICE_CURRENCY", "value": spec.pricing.currency or "usd"})
        tls = spec.orchestrator.tls
        if tls.ca_bundle_secret_ref is not None:
            env.append({"name": "LIVE_RUNNER_CA_FILE", "value": f"{ORCH_CA_MOUNT}/{ORCH_CA_FILE}"})
        if tls.insecure_skip_verify:
            env.append({"name": "LIVE_RUNNER_INSECURE_SKIP_VERIFY", "value": "true"})
    return env + _user_env(spec)


def _orchestrator_ca_volume(spec: LivepeerCapabilitySpec) -> dict[str, Any] | None:
    """The orchestrator's CA bundle for a liveRunner pod's heartbeats, from its Secret."""
    ref = spec.orchestrator.tls.ca_bundle_secret_ref
    if spec.capability.integration != "liveRunner" or ref is None:
        return None
    return {
        "name": "orchestrator-ca",
        "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": ORCH_CA_FILE}]},
    }


def _http_probe(path: str, *, period: int, failures: int, initial_delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": WORKER_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def _tolerations(spec: LivepeerCapabilitySpec) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.gpu.tolerations]
    if spec.gpu.count == 0:
        # A CPU replica must not be steered onto (or allowed onto) tainted GPU nodes.
        tolerations = [t for t in tolerations if t.get("key") != spec.gpu.resource_name]
    return tolerations


def _node_selector(spec: LivepeerCapabilitySpec) -> dict[str, str]:
    selector = dict(spec.gpu.node_selector)
    if spec.gpu.product:
        selector["nvidia.com/gpu.product"] = spec.gpu.product
    return selector


def build_worker_deployment(ctx: BuildContext) -> dict[str, Any]:
    """The GPU worker: model-repo init container, then Triton and the Livepeer adapter."""
    if not ctx.resolved_revision:
        raise ValueError("build_worker_deployment needs the resolved revision (a commit SHA)")
    spec = ctx.spec
    name = naming.worker_name(ctx.name)
    security = _hardened_container_security()
    cache_mount = {"name": "cache", "mountPath": naming.CACHE_MOUNT, "readOnly": True}
    models_mount = {"name": "models", "mountPath": naming.MODELS_MOUNT}
    common: dict[str, Any] = {
        "image": spec.serving.image,
        "imagePullPolicy": spec.serving.image_pull_policy,
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    init = {
        "name": "model-repo",
        **common,
        "command": [
            "lpbyoc-worker",
            "model-repo",
            "--weights-dir",
            naming.weights_dir(spec.model.repo, ctx.resolved_revision),
            "--output",
            naming.MODELS_MOUNT,
            "--model-name",
            naming.TRITON_MODEL_NAME,
            "--serving-json",
            serving_json(spec),
            "--kind",
            triton_kind(ctx),
            *model_repo_extra_args(ctx),
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [cache_mount, models_mount, _tmp_mount()],
    }
    triton = {
        "name": "triton",
        **common,
        "command": ["lpbyoc-worker", "triton", "--model-repository", naming.MODELS_MOUNT],
        "resources": _triton_resources(spec),
        # The generated repository links the weights on the cache volume.
        "volumeMounts": [cache_mount, models_mount, _tmp_mount(), _shm_mount()],
    }
    if spec.env:
        triton["env"] = _user_env(spec)
    adapter = {
        "name": "adapter",
        **common,
        "command": adapter_command(ctx),
        "ports": [{"name": WORKER_PORT_NAME, "containerPort": spec.serving.port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": _http_probe("/ready", period=5, failures=3),
        "livenessProbe": _http_probe("/healthz", period=10, failures=3),
        # Loading large weights into Triton can take many minutes; liveness waits for startup.
        "startupProbe": _http_probe("/healthz", period=5, failures=180),
        "volumeMounts": [_tmp_mount(), _shm_mount()],
    }
    ca_volume = _orchestrator_ca_volume(spec)
    if ca_volume is not None:
        adapter["volumeMounts"].append(
            {"name": ca_volume["name"], "mountPath": ORCH_CA_MOUNT, "readOnly": True}
        )
    adapter_env = _adapter_env(ctx)
    if adapter_env:
        adapter["env"] = adapter_env
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": 30,
        "initContainers": [init],
        "containers": [triton, adapter],
        "volumes": [
            {
                "name": "cache",
                "persistentVolumeClaim": {"claimName": naming.cache_claim_name(spec), "readOnly": True},
            },
            {"name": "models", "emptyDir": {}},
            _tmp_volume(),
            _shm_volume(),
            *([ca_volume] if ca_volume is not None else []),
        ],
    }
    node_selector = _node_selector(spec)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    labels = naming.capability_labels(ctx.name, "worker")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _own_metadata(ctx, name, "worker"),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 3,
            # Pulling a multi-GB image and loading weights routinely outlasts the 10-minute default.
            "progressDeadlineSeconds": 1800,
            "selector": {"matchLabels": naming.worker_selector_labels(ctx.name)},
            # GPUs are scarce: replace pods one at a time instead of asking for an extra GPU.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        naming.SERVING_HASH_ANNOTATION: serving_hash(ctx),
                        naming.MODEL_REVISION_ANNOTATION: ctx.resolved_revision,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def build_worker_service(ctx: BuildContext) -> dict[str, Any]:
    port = ctx.spec.serving.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _own_metadata(ctx, naming.worker_name(ctx.name), "worker"),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.worker_selector_labels(ctx.name),
            "ports": [
                {"name": WORKER_PORT_NAME, "port": port, "targetPort": WORKER_PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def build_children(ctx: BuildContext, weights_ready: bool) -> list[dict[str, Any]]:
    """Every child to apply, in apply order; the Deployment only once the weights are cached."""
    children: list[dict[str, Any]] = []
    pvc = build_cache_pvc(ctx)
    if pvc is not None:
        children.append(pvc)
    children.append(build_prefetch_job(ctx))
    children.append(build_worker_service(ctx))
    if weights_ready:
        children.append(build_worker_deployment(ctx))
    return children
