"""Render the chart with Helm's Go SDK for a table of value sets, lint it, and validate every
object against the Kubernetes OpenAPI schemas of the oldest and newest supported versions."""

from __future__ import annotations

import argparse
import importlib
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from lpbyoc.orchestrator import aimodels
from lpbyoc.settings import OperatorSettings

from tests.chart.rendering import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    container,
    crd_available,
    merge,
    notes,
    of_kind,
    one,
    render_objects,
)

# Until `lpbyoc crd` output is committed the chart has no CRD to ship; every other case still
# renders with crds.enabled=false, and tests/chart/test_crds.py skips with that reason.
BASE: dict[str, Any] = {} if crd_available() else {"crds": {"enabled": False}}

ORCHESTRATOR = {"orchestrator": {"enabled": True, "secret": {"name": "orch-secret"}}}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "all-namespaces": {"watch": {"allNamespaces": True}},
    "two-namespaces": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "crds-disabled": {"crds": {"enabled": False}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "orchestrator": ORCHESTRATOR,
    "custom-image": {
        "image": {"repository": "registry.example/lpbyoc", "tag": "dev", "pullPolicy": "Always"},
        "imagePullSecrets": ["regcred"],
    },
    "settings": {
        "operator": {
            "workerImage": "registry.example/worker:dev",
            "hfEndpoint": "http://hub-mirror:8080",
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    },
}
# Objects of kinds the API server only knows once another CRD is installed.
NOT_IN_CORE_SCHEMAS = {"ServiceMonitor"}


def values_for(case: str) -> dict[str, Any]:
    return merge(BASE, VALUE_SETS[case])


def operator_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "operator")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_lint_strict_has_no_warnings(case: str, kube_version: str) -> None:
    result = helm_python.lint(CHART, values_for(case), strict=True, kube_version=f"v{kube_version}.0")
    # severity 1 is INFO (e.g. "icon is recommended"); 2 WARNING, 3 ERROR.
    problems = [m for m in result["messages"] if m["severity"] >= 2]
    assert problems == [] and result["errors"] == []


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_every_object_is_valid_for_oldest_and_newest_kubernetes(case: str) -> None:
    objects = render_objects(values_for(case))
    assert objects, "nothing rendered"
    for obj in objects:
        if obj["kind"] in NOT_IN_CORE_SCHEMAS:
            continue
        for version in KUBE_VERSIONS:
            # strict=True also rejects misspelled fields.
            kubernetes_validate.validate(obj, version, strict=True)
        name = obj["metadata"]["name"]
        assert (
            len(name) <= 63 or obj["kind"].startswith("Cluster") or obj["kind"] == "CustomResourceDefinition"
        )


def test_default_scope_is_the_release_namespace() -> None:
    objects = render_objects(values_for("default"))
    args = container(operator_deployment(objects), "operator")["args"]
    assert f"--namespace={NAMESPACE}" in args
    assert "--all-namespaces" not in args
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "Role")] == [NAMESPACE]


def test_listed_namespaces_each_get_a_role_bound_to_the_release_service_account() -> None:
    objects = render_objects(values_for("two-namespaces"))
    args = container(operator_deployment(objects), "operator")["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert sorted(bindings) == ["team-a", "team-b"]
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "lp-livepeer-byoc-operator", "namespace": NAMESPACE}
        ]


def test_all_namespaces_uses_cluster_roles_only() -> None:
    objects = render_objects(values_for("all-namespaces"))
    args = container(operator_deployment(objects), "operator")["args"]
    assert "--all-namespaces" in args
    assert not any(a.startswith("--namespace") for a in args)
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []


def test_pod_security_defaults() -> None:
    deployment = operator_deployment(render_objects(values_for("default")))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctr = container(deployment, "operator")
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    assert ctr["resources"]["requests"]["memory"] and ctr["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ctr["livenessProbe"]["httpGet"]["port"] == "health" and ports["health"] == 8081
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_custom_image_and_pull_secrets() -> None:
    deployment = operator_deployment(render_objects(values_for("custom-image")))
    ctr = container(deployment, "operator")
    assert ctr["image"] == "registry.example/lpbyoc:dev"
    assert ctr["imagePullPolicy"] == "Always"
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_default_image_tag_is_the_app_version() -> None:
    ctr = container(operator_deployment(render_objects(values_for("default"))), "operator")
    assert ctr["image"] == "ghcr.io/livepeer-byoc/operator:0.1.0"


def test_settings_env_is_what_the_operator_reads() -> None:
    """The LPBYOC_* variables the chart sets must parse into OperatorSettings (unknown names
    would be ignored by the operator, so a renamed setting must fail here)."""
    ctr = container(operator_deployment(render_objects(values_for("settings"))), "operator")
    env = {e["name"]: e["value"] for e in ctr["env"]}
    settings_env = {k: v for k, v in env.items() if k.startswith("LPBYOC_")}
    known = {f"LPBYOC_{name.upper()}" for name in OperatorSettings.__dataclass_fields__}
    assert set(settings_env) <= known, set(settings_env) - known
    settings = OperatorSettings.from_env(settings_env)
    assert settings.worker_image == "registry.example/worker:dev"
    assert settings.prefetch_image == "registry.example/worker:dev"
    assert settings.hf_endpoint == "http://hub-mirror:8080"
    assert settings.prefetch_stall_timeout_s == 60 and settings.prefetch_max_retries == 5
    assert env["TZ"] == "UTC"


def test_operator_args_parse_with_the_real_command_line() -> None:
    try:
        run_command = importlib.import_module("lpbyoc.commands.run")
    except ModuleNotFoundError:
        pytest.skip("lpbyoc.commands.run is not in the tree yet: cannot check the chart's args against it")
    expected_scope = {
        "default": ([NAMESPACE], False),
        "two-namespaces": (["team-a", "team-b"], False),
        "all-namespaces": (None, True),
    }
    for case, (namespaces, all_namespaces) in expected_scope.items():
        values = merge(values_for(case), {"operator": {"verbose": True, "resyncIntervalSeconds": 12.5}})
        args = container(operator_deployment(render_objects(values)), "operator")["args"]
        parser = argparse.ArgumentParser(prog="lpbyoc run", exit_on_error=False)
        run_command.add_arguments(parser)
        parsed = parser.parse_args(args)
        assert parsed.namespace == namespaces and parsed.all_namespaces is all_namespaces
        assert parsed.metrics_port == 8080 and parsed.health_port == 8081
        assert parsed.verbose is True and parsed.resync_interval == 12.5


def test_metrics_service_selects_the_operator_pod() -> None:
    objects = render_objects(values_for("default"))
    service = one(objects, "Service", "operator")
    pod_labels = operator_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert of_kind(objects, "ServiceMonitor") == []


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = render_objects(values_for("service-monitor"))
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", "operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_service_monitor_without_the_service_is_a_clear_error() -> None:
    values = merge(values_for("service-monitor"), {"metrics": {"service": {"enabled": False}}})
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("needs metrics.service.enabled")):
        render_objects(values)


def test_orchestrator_mounts_the_operators_aimodels_configmap_and_secret() -> None:
    objects = render_objects(values_for("orchestrator"))
    orch = one(objects, "Deployment", "orchestrator")
    pod = orch["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The operator writes a ConfigMap, or a Secret when an entry carries a worker token.
    file_objects = [
        aimodels.file_object(NAMESPACE, "orchestrator", "[]", secret=secret) for secret in (False, True)
    ]
    sources = {kind: src[kind] for src in volumes["aimodels"]["projected"]["sources"] for kind in src}
    assert sorted(sources) == ["configMap", "secret"]
    for obj in file_objects:
        source = sources["configMap" if obj["kind"] == "ConfigMap" else "secret"]
        assert source["name"] == obj["metadata"]["name"] and source["optional"] is True
        data = obj.get("data") or obj.get("stringData") or {}
        assert source["items"] == [{"key": key, "path": "aiModels.json"} for key in data]
    assert volumes["orch-secret"]["secret"]["secretName"] == "orch-secret"
    ctr = container(orch, "livepeer")
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    args = ctr["args"]
    assert "-orchestrator" in args and "-aiWorker" in args
    assert f"-aiModels={mounts['aimodels']}/aiModels.json" in args
    assert f"-orchSecret={mounts['orch-secret']}/orchSecret" in args
    assert "-network=offchain" in args
    # The secret value itself never appears in the pod spec.
    assert not any(e.get("valueFrom") for e in ctr.get("env", []))
    service = one(objects, "Service", "orchestrator")
    assert service["spec"]["ports"][0]["port"] == 8935
    assert f"-serviceAddr={service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:8935" in args
    assert "lpbyoc-aimodels-orchestrator" in notes(values_for("orchestrator"))


def test_orchestrator_without_aimodels_needs_no_configmap() -> None:
    objects = render_objects(merge(values_for("orchestrator"), {"orchestrator": {"aiModels": False}}))
    orch = one(objects, "Deployment", "orchestrator")
    assert "aimodels" not in {v["name"] for v in orch["spec"]["template"]["spec"]["volumes"]}
    assert "-aiWorker" not in container(orch, "livepeer")["args"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"orchestrator": {"enabled": True}}, "orchestrator.secret.name is required"),
        (
            merge(ORCHESTRATOR, {"orchestrator": {"network": "arbitrum-one-mainnet"}}),
            'orchestrator.ethUrl is required for network "arbitrum-one-mainnet"',
        ),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
        (
            merge(ORCHESTRATOR, {"watch": {"namespaces": ["team-a"]}}),
            'orchestrator.enabled needs the release namespace "lpbyoc" in watch.namespaces',
        ),
    ],
)
def test_incomplete_values_fail_with_the_missing_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render_objects(merge(BASE, override))


def test_notes_give_the_next_step() -> None:
    text = notes(values_for("default"))
    assert f"kubectl -n {NAMESPACE} apply -f examples/" in text
    example = text.split("apply -f ", 1)[1].split()[0]
    assert (CHART.parent.parent / example).is_file(), f"NOTES.txt names a missing example: {example}"
    assert "rollout status deployment/lp-livepeer-byoc-operator" in text
