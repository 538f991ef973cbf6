"""Bounded concurrency: a slot now or a refusal (BYOC jobs), or a bounded wait (ai-runner routes).

go-livepeer cannot read a 503 from an ai-runner route (its handler panics on the nil answer) and
enforces the aiModels capacity itself, so those routes wait for a slot in a bounded queue and
answer 500 with a message when the queue is full or the wait times out (`queued_slot`). BYOC jobs
keep the immediate refusal (`slot`, 503 + Retry-After): the BYOC proxy passes the worker's status
through to the gateway, which already treats 503 as "no capacity here".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CapacityExceeded(Exception):
    pass


class QueueFull(CapacityExceeded):
    pass


class QueueTimeout(CapacityExceeded):
    pass


class CapacityGate:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_flight = 0
        self.waiting = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._freed = asyncio.Condition()

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.waiting > 0

    def _take(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    async def _release(self) -> None:
        async with self._freed:
            self.in_flight -= 1
            self._freed.notify_all()
            if not self.busy:
                self._idle.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A slot at once, or CapacityExceeded (queued requests keep their place)."""
        if self.in_flight + self.waiting >= self.capacity:
            raise CapacityExceeded(f"all {self.capacity} slots are busy")
        self._take()
        try:
            yield
        finally:
            await self._release()

    @asynccontextmanager
    async def queued_slot(self, max_waiting: int, timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109 (a queue wait, not a call timeout)
        """A slot, waiting in FIFO order up to `timeout` seconds behind at most `max_waiting` others."""
        async with self._freed:
            if self.in_flight >= self.capacity or self.waiting > 0:
                if self.waiting >= max_waiting:
                    raise QueueFull(f"all {self.capacity} slots are busy and {self.waiting} requests wait")
                self.waiting += 1
                self._idle.clear()
                try:
                    await asyncio.wait_for(
                        self._freed.wait_for(lambda: self.in_flight < self.capacity), max(0.0, timeout)
                    )
                except TimeoutError:
                    raise QueueTimeout(f"no slot became free within {timeout:g} s") from None
                finally:
                    self.waiting -= 1
                    if not self.busy:
                        self._idle.set()
            self._take()
        try:
            yield
        finally:
            await self._release()

    async def wait_idle(self, within: float) -> bool:
        """True when every slot was released (and nothing waits) within `within` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, within))
        except TimeoutError:
            return False
        return True
