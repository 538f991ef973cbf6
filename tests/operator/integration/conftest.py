"""Fixtures: the API double with the operator (tests.support.kube) and a go-livepeer double."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.kube import Cluster, LoopThread, cluster, operator  # noqa: F401  (fixtures)
from tests.support.orchestrator_double import OrchestratorDouble

ORCH_SECRET = "orch-secret-value"


@pytest.fixture()
def orch() -> Iterator[OrchestratorDouble]:
    """The go-livepeer double, served from its own loop (see LoopThread)."""
    with LoopThread("orchestrator") as thread:
        double = thread.run(OrchestratorDouble(secret=ORCH_SECRET).start())
        try:
            yield double
        finally:
            thread.run(double.close())


def byoc_spec(orch_url: str, **changes: Any) -> dict[str, Any]:
    """A byoc capability spec (camelCase, as a user writes it); `changes` replace top-level keys."""
    spec: dict[str, Any] = {
        "capability": {"name": "restyle", "integration": "byoc"},
        "model": {"repo": "livepeer-byoc/restyle", "revision": "main", "allowPatterns": ["*.pt"]},
        "cache": {"size": "5Gi"},
        "gpu": {"count": 1},
        "replicas": 1,
        "capacityPerReplica": 2,
        "orchestrator": {
            "name": "orch-main",
            "url": orch_url,
            "secretRef": {"name": "orch", "key": "secret"},
        },
    }
    spec.update(changes)
    return spec


@pytest_asyncio.fixture()
async def with_orch_secret(cluster: Cluster) -> None:  # noqa: F811
    await cluster.create_secret("orch", {"secret": ORCH_SECRET})
