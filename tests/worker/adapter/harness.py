"""Shared pieces of the adapter tests: a gated backend and a handle on a running adapter."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.inference import TritonInference

MODEL_ID = "lpbyoc-test/tiny-conv"


class Gate:
    """Calls wait at the gate until `release` is set; tests wait until `count` calls are there."""

    def __init__(self, arrival_timeout_s: float) -> None:
        self.release = asyncio.Event()
        self.waiting = 0
        self._arrived = asyncio.Condition()
        self._arrival_timeout_s = arrival_timeout_s

    async def passage(self) -> None:
        async with self._arrived:
            self.waiting += 1
            self._arrived.notify_all()
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1

    async def wait_for_waiting(self, count: int) -> None:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: self.waiting >= count), self._arrival_timeout_s
            )


class GatedInference:
    """The real TritonInference, but each `infer` first waits for `release` to be set.

    Holds requests in flight deterministically for the capacity and drain tests; the call
    itself still goes to Triton.
    """

    def __init__(self, inner: TritonInference) -> None:
        self.inner = inner
        self.gate = Gate(arrival_timeout_s=10)
        self.release = self.gate.release
        self.wait_for_waiting = self.gate.wait_for_waiting

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        await self.gate.passage()
        return await self.inner.infer(batch)

    async def is_model_ready(self) -> bool:
        return await self.inner.is_model_ready()

    async def close(self) -> None:
        await self.inner.close()


@dataclasses.dataclass
class RunningAdapter:
    adapter: Adapter
    url: str
    backend: Any

    async def wait_ready(self) -> None:
        await asyncio.wait_for(self.adapter.readiness.wait_model_ready(), 20)


AdapterFactory = Callable[..., Awaitable[RunningAdapter]]
