"""`lpbyoc render`: examples render to valid Kubernetes objects; bad input exits 2 with a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from lpbyoc import naming
from lpbyoc.cli import main
from lpbyoc.render import UNRESOLVED_SHA, parse_capabilities, render_objects
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import parse_spec

from .conftest import BYOC_BODY, EXAMPLES, REPO, load_example, with_changes


def render_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_renders_to_valid_objects(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render_cli(capsys, "-f", str(path))
    assert (code, err) == (0, "")
    objects = [o for o in yaml.safe_load_all(out) if o]
    kinds = [o["kind"] for o in objects]
    assert {"Job", "Service", "Deployment"} <= set(kinds)
    for obj in objects:
        for version in ("1.30", "1.34"):
            kubernetes_validate.validate(obj, version, strict=True)
    name = load_example(path)["metadata"]["name"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == naming.worker_name(name)


def test_examples_cover_the_three_integrations() -> None:
    integrations = {load_example(p)["spec"]["capability"]["integration"] for p in EXAMPLES}
    assert integrations == {"byoc", "aiModels", "liveRunner"}
    for path in EXAMPLES:
        assert path.read_text().startswith("# "), f"{path.name} needs a leading comment saying what it is"


def test_branch_revision_renders_a_placeholder_with_a_comment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render_cli(capsys, "-f", str(REPO / "examples" / "byoc-image-restyle.yaml"))
    assert code == 0
    assert f"# {UNRESOLVED_SHA}: the operator resolves revision 'main' to a commit SHA at run time" in out
    deployment = next(o for o in yaml.safe_load_all(out) if o and o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert f"/cache/models/livepeer-byoc--restyle-torchscript/{UNRESOLVED_SHA}" in init


def test_pinned_sha_is_printed_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "examples" / "aimodels-image-to-image.yaml"
    sha = load_example(path)["spec"]["model"]["revision"]
    code, out, _ = render_cli(capsys, "-f", str(path))
    assert code == 0 and UNRESOLVED_SHA not in out
    assert f"/cache/models/stabilityai--sd-turbo/{sha}" in out


def test_aimodels_object_is_included_when_the_orchestrator_module_provides_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(REPO / "examples" / "aimodels-image-to-image.yaml")
    _, out, _ = render_cli(capsys, "-f", path)
    assert "name: lpbyoc-aimodels-orch-main" in out
    monkeypatch.setitem(sys.modules, "lpbyoc.orchestrator.aimodels", None)  # the module is absent
    code, out, _ = render_cli(capsys, "-f", path)
    assert code == 0 and "lpbyoc-aimodels-" not in out


def test_capabilities_sharing_a_cache_render_it_once_owned_by_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = with_changes(BYOC_BODY, {"metadata.uid": "uid-a"})
    second = with_changes(
        BYOC_BODY,
        {
            "metadata.name": "restyle-b",
            "metadata.uid": "uid-b",
            "spec.capability.name": "restyle-b",
            "spec.model.revision": "v2",
        },
    )
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([first, second]))
    code, out, _ = render_cli(capsys, "-f", str(path))
    assert code == 0
    objects = [o for o in yaml.safe_load_all(out) if o]
    pvcs = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert len(pvcs) == 1
    assert [r["name"] for r in pvcs[0]["metadata"]["ownerReferences"]] == ["restyle", "restyle-b"]
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert len(jobs) == 2  # different revisions: one download each
    assert all(len(j["metadata"]["ownerReferences"]) == 1 for j in jobs)
    assert sum(o["kind"] == "Deployment" for o in objects) == 2


def test_one_retaining_user_keeps_the_shared_cache() -> None:
    bodies = [
        ("a.yaml", with_changes(BYOC_BODY, {"spec.cache.retainOnDelete": True})),
        ("b.yaml", with_changes(BYOC_BODY, {"metadata.name": "other", "metadata.uid": "uid-o"})),
    ]
    rendered = render_objects(parse_capabilities(bodies), OperatorSettings())
    pvc = next(r.obj for r in rendered if r.obj["kind"] == "PersistentVolumeClaim")
    assert "ownerReferences" not in pvc["metadata"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            with_changes(BYOC_BODY, {"spec.model.revision": "bad rev"}),
            "spec.model.revision: Invalid value: 'bad rev'",
        ),
        (
            with_changes(BYOC_BODY, {"spec.orchestrator.secretRef": ...}),
            "orchestrator.url and orchestrator.secretRef are required",
        ),
        (with_changes(BYOC_BODY, {"spec.replicas": "two"}), "spec.replicas: 'two' is not of type 'integer'"),
        (
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
            "Secret 's': not a LivepeerCapability",
        ),
        (["a", "list"], "expected a YAML mapping"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    document: Any, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    code, out, err = render_cli(capsys, "-f", str(path))
    assert code == 2 and out == ""
    assert expected in err and str(path) in err
    assert "Traceback" not in err


def test_unreadable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = render_cli(capsys, "-f", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    code, _, err = render_cli(capsys, "-f", str(broken))
    assert code == 2 and "not valid YAML" in err


def test_settings_file_reaches_the_children(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "hf_endpoint: http://hub.internal:8080\nprefetch_image: reg/worker:9\ncluster_domain: corp\n"
    )
    code, out, _ = render_cli(
        capsys, "-f", str(REPO / "examples" / "aimodels-image-to-image.yaml"), "--settings", str(settings)
    )
    assert code == 0
    job = next(o for o in yaml.safe_load_all(out) if o and o["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/worker:9"
    assert {"name": "HF_ENDPOINT", "value": "http://hub.internal:8080"} in container["env"]
    assert "svc.corp:8000" in out  # the aiModels entry's URL uses the cluster domain
    settings.write_text("hf_endpont: typo\n")
    code, _, err = render_cli(
        capsys, "-f", str(REPO / "examples" / "aimodels-image-to-image.yaml"), "--settings", str(settings)
    )
    assert code == 2 and "unknown operator settings: hf_endpont" in err


def test_namespace_flag_and_metadata_namespace(tmp_path: Path) -> None:
    caps = parse_capabilities(
        [("x", with_changes(BYOC_BODY, {"metadata.namespace": ...}))], default_namespace="team"
    )
    assert caps[0].namespace == "team"
    assert caps[0].spec == parse_spec(BYOC_BODY["spec"])


def test_console_script_renders_without_a_cluster() -> None:
    """The installed `lpbyoc` entry point, as a user runs it (one subprocess, to cover packaging)."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "lpbyoc"),
            "render",
            "-f",
            str(REPO / "examples" / "liverunner-live-video.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout and "nvidia.com/mig-3g.20gb: 1" in result.stdout


def test_all_examples_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """byoc and liveRunner examples use the same repo: one claim, sized for the larger request."""
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    code, out, err = render_cli(capsys, *args)
    assert (code, err) == (0, "")
    objects = [o for o in yaml.safe_load_all(out) if o]
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    assert sum(o["kind"] == "Deployment" for o in objects) == len(EXAMPLES)
    shared = next(
        o
        for o in objects
        if o["kind"] == "PersistentVolumeClaim" and len(o["metadata"].get("ownerReferences", [])) == 2
    )
    assert shared["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert {r["name"] for r in shared["metadata"]["ownerReferences"]} == {"image-restyle", "live-restyle"}
