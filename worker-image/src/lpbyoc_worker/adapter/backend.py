"""What the adapter needs from Triton, and how Triton's failures reach the client."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from lpbyoc_worker.inference import InferenceFailed, InvalidInput, TritonUnavailable

from .errors import RequestError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


class InferenceBackend(Protocol):
    """`lpbyoc_worker.inference.TritonInference` satisfies this; tests may pass a slowed one."""

    async def infer(self, batch: np.ndarray) -> np.ndarray: ...

    async def is_model_ready(self) -> bool: ...

    async def close(self) -> None: ...


def triton_error(exc: Exception) -> RequestError:
    """Map a failure of `infer` to the client's status; the full error goes to the log only."""
    if isinstance(exc, TritonUnavailable):
        log.warning("Triton unavailable: %s", exc)
        return RequestError(
            503, f"The inference server is unavailable: {exc}", {"Retry-After": RETRY_AFTER_SECONDS}
        )
    if isinstance(exc, InvalidInput):
        return RequestError(400, f"The input does not fit the model: {exc}")
    if isinstance(exc, InferenceFailed):
        log.warning("Triton inference failed: %s", exc)
        return RequestError(502, f"The inference server failed the request: {exc}")
    log.exception("unexpected inference error")
    return RequestError(500, "Internal error while running the model.")
