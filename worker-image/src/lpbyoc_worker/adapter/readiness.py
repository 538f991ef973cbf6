"""Tracks whether Triton has the model loaded (polled), whether it is the model this worker was
started for, and whether the adapter is draining; derives ai-runner's `/health` status from that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .metrics import AdapterMetrics

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


class ModelProbe(Protocol):
    async def is_model_ready(self) -> bool: ...


class IncompatibleModel(Exception):
    """The model Triton serves cannot serve what this worker was started for: fatal, exit non-zero."""


class Readiness:
    def __init__(
        self,
        backend: ModelProbe,
        poll_seconds: float,
        metrics: AdapterMetrics,
        verify: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self._backend = backend
        self._poll_seconds = poll_seconds
        self._metrics = metrics
        # Run once each time the model becomes ready; IncompatibleModel from it is fatal.
        self._verify = verify
        self._verified = verify is None
        self._model_ready = asyncio.Event()
        self.was_ready = False
        self.fatal: str | None = None
        self.fatal_event = asyncio.Event()
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    @property
    def model_ready(self) -> bool:
        return self._model_ready.is_set()

    @property
    def ready(self) -> bool:
        return self.model_ready and not self.draining

    def reason(self) -> str:
        if self.fatal:
            return self.fatal
        if self.draining:
            return "The adapter is shutting down."
        if not self.model_ready:
            return "The model is not loaded in the inference server yet."
        return ""

    def health(self, busy: bool) -> str:
        """ai-runner's HealthCheck status.

        LOADING until the model is first ready; IDLE when ready with nothing in flight, OK while a
        request or stream is; ERROR once the model was ready and Triton lost it (or the model is
        the wrong one). go-livepeer counts any 200 status but ERROR as ready at startup.
        """
        if self.fatal:
            return "ERROR"
        if self.model_ready:
            return "OK" if busy else "IDLE"
        return "ERROR" if self.was_ready else "LOADING"

    async def wait_model_ready(self) -> None:
        await self._model_ready.wait()

    async def _ask(self) -> bool:
        try:
            # A hung Triton must turn readiness off, not freeze it at its last value.
            return bool(await asyncio.wait_for(self._backend.is_model_ready(), CHECK_TIMEOUT_SECONDS))
        except Exception as exc:  # any failure to ask means "not ready", never a crash
            log.debug("readiness check failed: %s", exc)
            return False

    async def _verified_now(self) -> bool:
        if self._verified or self._verify is None:
            return True
        try:
            await self._verify()
        except IncompatibleModel as exc:
            self.fatal = str(exc)
            self.fatal_event.set()
            log.error("%s", exc)
            return False
        except Exception as exc:  # Triton went away mid-check: try again at the next poll
            log.debug("model verification failed, retrying: %s", exc)
            return False
        self._verified = True
        return True

    async def check_once(self) -> bool:
        ready = False if self.fatal else await self._ask()
        if ready:
            ready = await self._verified_now()
        elif self._verify is not None:
            self._verified = False  # a Triton that comes back may serve another model
        if ready != self.model_ready:
            log.info("model ready: %s", ready)
        if ready:
            self.was_ready = True
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
