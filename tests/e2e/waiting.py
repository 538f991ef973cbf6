"""Poll an object until a predicate holds; on timeout say what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.e2e.status import describe, has_failed

Fetch = Callable[[], Awaitable[dict[str, Any] | None]]


class WaitTimeout(AssertionError):
    def __init__(self, what: str, timeout: float, last: dict[str, Any] | None) -> None:
        super().__init__(f"timed out after {timeout:g}s waiting for {what}; last seen:\n{describe(last)}")
        self.last = last


class GaveUp(AssertionError):
    """The object reached a terminal state that the predicate can no longer become true from."""


async def wait_for(
    fetch: Fetch,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    within: float,
    interval: float = 2.0,
    fail_fast: Callable[[dict[str, Any]], bool] = has_failed,
) -> dict[str, Any]:
    """Return the first fetched object satisfying `predicate`.

    `fetch` returns None while the object does not exist. A Failed capability stops the wait
    at once (GaveUp) rather than burning the whole timeout.
    """
    deadline = time.monotonic() + within
    last: dict[str, Any] | None = None
    while True:
        last = await fetch()
        if last is not None:
            if predicate(last):
                return last
            if fail_fast(last):
                raise GaveUp(f"gave up waiting for {what}:\n{describe(last)}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, within, last)
        await asyncio.sleep(interval)


async def wait_for_absence(fetch: Fetch, *, what: str, within: float, interval: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while True:
        last = await fetch()
        if last is None:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what} to be deleted", within, last)
        await asyncio.sleep(interval)
