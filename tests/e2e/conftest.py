"""e2e-marked tests run only against a live kind cluster; everywhere else they skip with the
reason (never counted as passed). The suite's own logic is tested unmarked, here and always."""

from __future__ import annotations

import functools

import pytest

from tests.e2e.config import E2EConfig
from tests.e2e.kubectl import Kubectl
from tests.e2e.prerequisites import missing_prerequisites


@functools.cache
def _skip_reason() -> str | None:
    config = E2EConfig.from_env()
    return missing_prerequisites(config.cluster, config.context)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_items = [item for item in items if item.get_closest_marker("e2e")]
    if not e2e_items:
        return
    reason = _skip_reason()
    if reason is None:
        return
    for item in e2e_items:
        item.add_marker(pytest.mark.skip(reason=f"e2e: {reason}"))


@pytest.fixture(scope="session")
def e2e_config() -> E2EConfig:
    return E2EConfig.from_env()


@pytest.fixture
def kubectl(e2e_config: E2EConfig) -> Kubectl:
    return Kubectl(context=e2e_config.context, namespace=e2e_config.namespace)
