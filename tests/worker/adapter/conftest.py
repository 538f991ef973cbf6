"""Adapters under test talk to a real tritonserver (tests.support.triton) through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.settings import AdapterSettings
from lpbyoc_worker.inference import TritonInference

from tests.support.triton import RunningTriton

from .harness import MODEL_ID, AdapterFactory, GatedInference, RunningAdapter


@pytest.fixture
async def start_adapter(triton_server: RunningTriton) -> AsyncIterator[AdapterFactory]:
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
