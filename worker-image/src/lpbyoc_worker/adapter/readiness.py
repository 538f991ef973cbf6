"""Tracks whether Triton has the model loaded (polled) and whether the adapter is draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .backend import InferenceBackend
from .metrics import AdapterMetrics

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    def __init__(self, backend: InferenceBackend, poll_seconds: float, metrics: AdapterMetrics) -> None:
        self._backend = backend
        self._poll_seconds = poll_seconds
        self._metrics = metrics
        self._model_ready = asyncio.Event()
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    @property
    def model_ready(self) -> bool:
        return self._model_ready.is_set()

    @property
    def ready(self) -> bool:
        return self.model_ready and not self.draining

    def reason(self) -> str:
        if self.draining:
            return "The adapter is shutting down."
        if not self.model_ready:
            return "The model is not loaded in the inference server yet."
        return ""

    async def wait_model_ready(self) -> None:
        await self._model_ready.wait()

    async def check_once(self) -> bool:
        try:
            # A hung Triton must turn readiness off, not freeze it at its last value.
            ready = await asyncio.wait_for(self._backend.is_model_ready(), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure to ask means "not ready", never a crash
            log.debug("readiness check failed: %s", exc)
            ready = False
        if ready != self.model_ready:
            log.info("model ready: %s", ready)
        if ready:
            self._model_ready.set()
        else:
            self._model_ready.clear()
        self._metrics.model_ready.set(1 if ready else 0)
        return ready

    async def _poll(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._poll_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="lpbyoc-readiness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
