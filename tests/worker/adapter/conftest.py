"""Adapters under test talk to a real tritonserver (tests.support.triton) through the real client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

# `tests.support` is imported from the repository root (tests/worker has no __init__.py).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from lpbyoc_worker.adapter.app import Adapter  # noqa: E402
from lpbyoc_worker.adapter.settings import AdapterSettings  # noqa: E402
from lpbyoc_worker.inference import TritonInference  # noqa: E402

from tests.support.triton import RunningTriton, triton_server  # noqa: E402, F401  (session fixture)

from .harness import MODEL_ID, AdapterFactory, GatedInference, RunningAdapter  # noqa: E402


@pytest.fixture
async def start_adapter(triton_server: RunningTriton) -> AsyncIterator[AdapterFactory]:  # noqa: F811
    started: list[Adapter] = []

    async def factory(
        *, gated: bool = False, model_name: str | None = None, live_runner: Any = None, **overrides: Any
    ) -> RunningAdapter:
        settings = AdapterSettings(
            **{
                "model_id": MODEL_ID,
                "capability": "tiny-conv",
                "host": "127.0.0.1",
                "port": 0,
                "ready_poll_seconds": 0.1,
                **overrides,
            }
        )
        inner = TritonInference(triton_server.grpc_url, model_name or triton_server.model_name, timeout_s=10)
        backend: Any = GatedInference(inner) if gated else inner
        adapter = Adapter(settings, backend, live_runner=live_runner)
        await adapter.start()
        started.append(adapter)
        return RunningAdapter(adapter=adapter, url=f"http://127.0.0.1:{adapter.port}", backend=backend)

    yield factory
    for adapter in started:
        await adapter.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
