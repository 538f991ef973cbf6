"""`served`: one real tritonserver for this package serving a tiny random-weight model of the real
architecture for every runtime task, each published on the Hub fixture and downloaded by the real
prefetcher first, as in the worker pod (Hub → prefetch → model-repo --task → Triton).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lpbyoc_worker.runtimes.backends import LocalTaskBackend
from lpbyoc_worker.runtimes.base import Device

from tests.support.hub_server import serve_hub
from tests.support.task_models import publish_and_prefetch, running_task_triton

from .task_cases import BUILDERS, MODELS, Served


# Package scope: the nine python-backend instances go away once these tests are done.
@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("task-models")
    snapshots: dict[str, Path] = {}
    with serve_hub() as hub:
        for repo, build in BUILDERS.items():
            source = build(work / "build" / repo.replace("/", "--"))
            snapshots[repo], result = publish_and_prefetch(hub, source, repo, work / "cache")
            assert result["result"] == "Succeeded", result
            # The prefetcher recorded what the snapshot serves, for the operator's compatibility check.
            wanted = {task for name, (model_repo, task) in MODELS.items() if model_repo == repo}
            assert wanted <= set(result["model"]["tasks"]), (repo, result["model"])
    models = {name: (snapshots[repo], task) for name, (repo, task) in MODELS.items()}
    local = {
        name: LocalTaskBackend.load(task, snapshots[repo], Device("cpu"))
        for name, (repo, task) in MODELS.items()
    }
    with running_task_triton(work, models) as server:
        yield Served(grpc_url=server.grpc_url, snapshots=snapshots, local=local)
