"""operator/Dockerfile builds the image the chart runs: slim Python, the operator distribution
only, a numeric non-root user matching the chart's runAsUser, and `lpbyoc run` as entrypoint.
(No Docker here: the file is checked as text; `make images` builds it.)"""

from __future__ import annotations

import json
import tomllib

import yaml

from tests.chart.rendering import CHART, REPO

DOCKERFILE = REPO / "operator" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_both_stages_are_python_311_slim() -> None:
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]


def test_final_stage_runs_lpbyoc_run_as_the_charts_non_root_uid() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    [entrypoint] = [args for word, args in stage if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["lpbyoc", "run"]


def test_only_the_operator_distribution_is_installed() -> None:
    copies = [args for word, args in instructions() if word == "COPY" and "--from" not in args]
    # The build context is operator/: nothing of the worker can be copied in.
    assert sorted(c.split()[0] for c in copies) == ["pyproject.toml", "src"]
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    for heavy in ("torch", "tritonclient", "pytrickle", "worker-image"):
        assert heavy not in runs
    project = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "tritonclient", "pytrickle", "nvidia-pytriton"):
        assert heavy not in deps


def test_the_final_stage_writes_no_bytecode_at_run_time() -> None:
    env = " ".join(args for word, args in final_stage() if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
