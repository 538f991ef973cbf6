"""kind-config.yaml is a GPU-ready kind Config, and the kind targets of mk/kind.mk run the
commands docs/kind.md describes (checked with `make -n`, which runs nothing)."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile" if (REPO / "Makefile").exists() else REPO / "mk" / "kind.mk"
CHART = REPO / "charts" / "livepeer-byoc-operator"
KIND_TARGETS = (
    "kind-up",
    "kind-fake-gpu",
    "images",
    "deploy-chart",
    "deploy",
    "kind-fake-gpu-deploy",
    "test-e2e",
    "kind-demo",
    "kind-down",
)

# The part of kind's v1alpha4 Cluster config (sigs.k8s.io/kind/pkg/apis/config/v1alpha4) this
# file uses; unknown keys are errors, as they are for `kind create cluster`.
MOUNT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["hostPath", "containerPath"],
    "properties": {
        "hostPath": {"type": "string"},
        "containerPath": {"type": "string"},
        "readOnly": {"type": "boolean"},
        "selinuxRelabel": {"type": "boolean"},
        "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
    },
}
KIND_CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "featureGates": {"type": "object"},
        "runtimeConfig": {"type": "object"},
        "networking": {"type": "object"},
        "containerdConfigPatches": {"type": "array", "items": {"type": "string"}},
        "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extraMounts": {"type": "array", "items": MOUNT},
                    "extraPortMappings": {"type": "array"},
                    "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def kind_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    return loaded


def make_n(target: str, *overrides: str) -> list[str]:
    """The commands `make` would run for `target`, one per line."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(MAKEFILE), target, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_kind_config_is_a_valid_kind_cluster_config() -> None:
    jsonschema.validate(kind_config(), KIND_CONFIG_SCHEMA)


def test_the_worker_node_gets_every_gpu_the_nvkind_way() -> None:
    config = kind_config()
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    assert len(workers) == 1, "KIND_GPU_NODE names the first worker, <cluster>-worker"
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} in workers[0][
        "extraMounts"
    ]
    assert [n["role"] for n in config["nodes"]].count("control-plane") == 1


def test_kind_config_documents_the_host_prerequisites() -> None:
    text = (REPO / "kind-config.yaml").read_text()
    for needle in (
        "accept-nvidia-visible-devices-as-volume-mounts",
        "nvidia-ctk runtime configure",
        "nvidia-smi",
    ):
        assert needle in text


def test_the_schema_catches_a_misspelled_mount() -> None:
    config = kind_config()
    config["nodes"][1]["extraMounts"][0] = {"hostpath": "/dev/null", "containerPath": "/x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, KIND_CONFIG_SCHEMA)


@pytest.mark.skipif(not (REPO / "Makefile").exists(), reason="no Makefile including mk/kind.mk yet")
def test_every_kind_target_is_listed_by_make_help() -> None:
    done = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", " ", done.stdout)
    listed = {line.split()[0] for line in plain.splitlines() if line.strip()}
    assert {*KIND_TARGETS, "chart"} <= listed


def test_kind_up_creates_the_cluster_prepares_the_node_and_installs_the_device_plugin() -> None:
    lines = make_n("kind-up")
    config = kind_config()
    assert lines[0] == f"kind create cluster --name {config['name']} --config kind-config.yaml --wait 180s"
    assert lines[1] == f'docker exec {config["name"]}-worker bash -c "$KIND_NODE_GPU_SETUP"'
    helm = shlex.split(lines[2])
    assert helm[:4] == ["helm", "upgrade", "--install", "nvidia-device-plugin"]
    assert helm[helm.index("--repo") + 1] == "https://nvidia.github.io/k8s-device-plugin"
    assert "--version" in helm and "--wait" in helm
    assert "nvidia.com/gpu" in lines[3].replace("\\", "") and lines[3].startswith(
        "kubectl --context kind-lpbyoc wait"
    )


def test_the_node_setup_script_is_valid_bash_and_configures_containerd() -> None:
    printed = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "-f",
            str(MAKEFILE),
            "--eval",
            'print-node-setup: ; @printf "%s\\n" "$$KIND_NODE_GPU_SETUP"',
            "print-node-setup",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "nvidia-ctk runtime configure --runtime=containerd" in printed
    assert "apt-get install -y -qq nvidia-container-toolkit" in printed
    assert "ModifyDeviceFiles: 0" in printed
    syntax = subprocess.run(
        ["bash", "-n"], input=printed, capture_output=True, text=True, timeout=10, check=False
    )
    assert syntax.returncode == 0, syntax.stderr


def test_kind_fake_gpu_patches_node_capacity() -> None:
    lines = make_n("kind-fake-gpu", "FAKE_GPU_COUNT=3")
    assert lines[0].startswith("kind create cluster --name lpbyoc")
    patch_cmd = shlex.split(lines[1])
    assert patch_cmd[:6] == ["kubectl", "--context", "kind-lpbyoc", "patch", "node", "lpbyoc-worker"]
    assert "--subresource=status" in patch_cmd and "--type=json" in patch_cmd
    patch = json.loads(patch_cmd[patch_cmd.index("-p") + 1])
    # "~1" is the JSON-pointer escape of "/" in nvidia.com/gpu.
    assert patch == [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "3"}]
    assert "=3" in lines[2] and " wait " in lines[2]
    assert not any("KIND_NODE_GPU_SETUP" in line or "device-plugin" in line for line in lines)


def test_images_build_both_and_load_them_into_kind() -> None:
    lines = make_n("images", "IMAGE_TAG=t1")
    assert lines[0] == "docker build -t ghcr.io/livepeer-byoc/operator:t1 -f operator/Dockerfile operator"
    assert (
        lines[1] == "docker build -t ghcr.io/livepeer-byoc/worker:t1 -f worker-image/Dockerfile worker-image"
    )
    assert (
        lines[2]
        == "kind load docker-image --name lpbyoc ghcr.io/livepeer-byoc/operator:t1 ghcr.io/livepeer-byoc/worker:t1"
    )


def helm_values(helm_line: str) -> dict[str, Any]:
    """The values a `helm upgrade` command line sets, parsed by Helm's own --set parsers."""
    argv = shlex.split(helm_line)
    values: dict[str, Any] = {}
    for flag, value in itertools.pairwise(argv):
        parsed = {"--set": helm_python.parse_set_string, "--set-json": helm_python.parse_set_json}.get(flag)
        if parsed:
            values = deep_merge(values, parsed(value))
    return values


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("target", ["deploy", "kind-fake-gpu-deploy"])
def test_deploy_installs_a_chart_release_the_schema_accepts(target: str) -> None:
    lines = make_n(target)
    helm_line = next(line for line in lines if line.startswith("helm upgrade --install lpbyoc "))
    values = helm_values(helm_line)
    assert values["orchestrator"]["enabled"] is True and values["image"]["tag"] == "0.1.0"
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(deep_merge(chart.values, values))
        rendered = chart.render(values, name="lpbyoc", namespace="lpbyoc-e2e")
    assert any("kind: Deployment" in text for text in rendered.values())
    assert any("create secret generic orch-secret" in line for line in lines)
    assert lines[-1].endswith("| kubectl --context kind-lpbyoc -n lpbyoc-e2e apply -f -")
    if target == "kind-fake-gpu-deploy":
        assert {"name": "LPBYOC_TRITON_KIND", "value": "KIND_CPU"} in values["operator"]["extraEnv"]


def test_deploy_applies_the_sample_pointed_at_the_charts_orchestrator() -> None:
    capability_cmd = make_n("deploy")[-1].split(" | ")[0]
    assert capability_cmd.startswith(
        ".venv/bin/python -m tests.e2e.manifests examples/byoc-image-restyle.yaml"
    )
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), *shlex.split(capability_cmd)[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cap = yaml.safe_load(done.stdout)
    assert cap["spec"]["orchestrator"]["url"] == (
        "https://lpbyoc-livepeer-byoc-operator-orchestrator.lpbyoc-e2e.svc.cluster.local:8935"
    )


def test_test_e2e_points_the_suite_at_the_cluster() -> None:
    [line] = make_n("test-e2e", "KIND_CLUSTER=gpu1")
    env = dict(part.split("=", 1) for part in shlex.split(line) if part.startswith("LPBYOC_E2E_"))
    assert env["LPBYOC_E2E_CLUSTER"] == "gpu1" and env["LPBYOC_E2E_CONTEXT"] == "kind-gpu1"
    assert " -m e2e tests/e2e " in line


def test_kind_down_deletes_only_its_cluster() -> None:
    assert make_n("kind-down", "KIND_CLUSTER=other") == ["kind delete cluster --name other"]


def test_chart_target_regenerates_the_chart_files() -> None:
    assert make_n("chart") == [".venv/bin/python charts/generate.py"]


@pytest.mark.parametrize(
    ("mode", "cluster_target", "cpu_triton"), [("gpu", "kind-up", False), ("fake-gpu", "kind-fake-gpu", True)]
)
def test_kind_demo_runs_the_suite_before_the_sample(mode: str, cluster_target: str, cpu_triton: bool) -> None:
    lines = make_n("kind-demo", f"KIND_DEMO_MODE={mode}")
    submakes = [line.split()[2] for line in lines if line.startswith("make --no-print-directory ")]
    assert submakes == [cluster_target, "images", "deploy-chart", "test-e2e", "deploy"]
    helm_lines = [line for line in lines if line.startswith("helm upgrade --install lpbyoc ")]
    assert len(helm_lines) == 2
    for helm_line in helm_lines:
        env = helm_values(helm_line)["operator"].get("extraEnv", [])
        assert ({"name": "LPBYOC_TRITON_KIND", "value": "KIND_CPU"} in env) is cpu_triton
    order = [i for i, line in enumerate(lines) if "pytest -m e2e" in line or "tests.e2e.manifests" in line]
    assert "pytest -m e2e" in lines[order[0]], "the sample must not take the GPU before the suite runs"


def test_the_fake_gpu_setting_is_one_the_operator_reads() -> None:
    from lpbyoc.settings import OperatorSettings

    values = helm_values(
        next(line for line in make_n("kind-fake-gpu-deploy") if line.startswith("helm upgrade"))
    )
    names = {e["name"] for e in values["operator"]["extraEnv"]}
    known = {f"LPBYOC_{field.upper()}" for field in OperatorSettings.__dataclass_fields__}
    if not names <= known:
        pytest.skip(
            f"OperatorSettings does not read {sorted(names - known)} yet: fake-GPU workers would ask Triton for KIND_GPU"
        )
    settings = OperatorSettings.from_env({"LPBYOC_TRITON_KIND": "KIND_CPU"})
    assert getattr(settings, "triton_kind", None) == "KIND_CPU"
