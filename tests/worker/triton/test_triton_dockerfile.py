"""worker-image/Dockerfile invariants (no Docker engine here, so the image cannot be built: parse it)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

WORKER = Path(__file__).resolve().parents[3] / "worker-image"
COMPILERS = {"gcc", "g++", "clang", "cmake", "make", "build-essential", "python3-dev", "cython3", "git"}


def stages() -> list[list[dict[str, str]]]:
    parser = DockerfileParser(str(WORKER / "Dockerfile"))
    result: list[list[dict[str, str]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            result.append([])
        if result and instruction["instruction"] != "COMMENT":
            result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def final_stage() -> list[dict[str, str]]:
    return stages()[-1]


def test_multi_stage_on_nvidia_triton_with_python_3_12() -> None:
    parser = DockerfileParser(str(WORKER / "Dockerfile"))
    assert len(parser.parent_images) >= 2, "builder stage + final stage"
    for image in parser.parent_images:
        repository, tag = image.rsplit(":", 1)
        assert repository == "nvcr.io/nvidia/tritonserver"
        year, month = (int(part) for part in re.match(r"(\d+)\.(\d+)-py3$", tag).groups())  # type: ignore[union-attr]
        # Releases before 24.12 ship Python 3.10, older than the worker's requires-python.
        assert (year, month) >= (24, 12), tag
    requires = tomllib.loads((WORKER / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires in (">=3.11", ">=3.12"), "the base image's Python 3.12 must satisfy requires-python"


def test_final_stage_runs_as_numeric_non_root_user(final_stage: list[dict[str, str]]) -> None:
    users = [i["value"] for i in final_stage if i["instruction"] == "USER"]
    assert users, "no USER in the final stage: the image would run as root"
    uid = users[-1].split(":")[0]
    # Numeric, so Kubernetes can enforce runAsNonRoot without resolving names.
    assert uid.isdigit() and int(uid) == 1000


def test_final_stage_installs_no_build_tools(final_stage: list[dict[str, str]]) -> None:
    for instruction in final_stage:
        if instruction["instruction"] != "RUN":
            continue
        words = set(shlex.split(instruction["value"].replace("&&", " ")))
        assert not words & COMPILERS, f"build tools in the final stage: {instruction['value']}"
        assert "pip" not in words, "the final stage copies a finished venv; nothing is built there"
    copies = [i["value"] for i in final_stage if i["instruction"] == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)


def test_numpy_is_pinned_below_2_in_the_image_and_the_wheel() -> None:
    installs = [
        i["value"]
        for stage in stages()
        for i in stage
        if i["instruction"] == "RUN" and "pip install" in i["value"]
    ]
    assert any('"numpy>=1.24,<2"' in run or "numpy<2" in run for run in installs)
    dependencies = tomllib.loads((WORKER / "pyproject.toml").read_text())["project"]["dependencies"]
    numpy_pins = [d for d in dependencies if d.replace(" ", "").startswith("numpy")]
    assert numpy_pins and all("<2" in pin for pin in numpy_pins)


def test_entrypoint_is_the_worker_console_script(final_stage: list[dict[str, str]]) -> None:
    entrypoints = [i["value"] for i in final_stage if i["instruction"] == "ENTRYPOINT"]
    assert entrypoints == ['["lpbyoc-worker"]'], "exec form, so signals reach the worker process"
    scripts = tomllib.loads((WORKER / "pyproject.toml").read_text())["project"]["scripts"]
    assert "lpbyoc-worker" in scripts


def test_venv_is_first_on_path_for_the_python_backend(final_stage: list[dict[str, str]]) -> None:
    env = " ".join(i["value"] for i in final_stage if i["instruction"] == "ENV")
    path = re.search(r"PATH=(\S+)", env)
    assert path and path.group(1).startswith("/opt/lpbyoc/venv/bin:")


def test_copied_sources_exist_in_the_build_context() -> None:
    for stage in stages():
        for instruction in stage:
            if instruction["instruction"] == "COPY" and not instruction["value"].startswith("--from="):
                source = instruction["value"].split()[0]
                assert (WORKER / source).exists(), f"COPY {source}: not in the worker-image/ build context"
