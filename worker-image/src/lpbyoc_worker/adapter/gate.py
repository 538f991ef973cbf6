"""Bounded concurrency: a slot or an immediate refusal, never a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CapacityExceeded(Exception):
    pass


class CapacityGate:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.capacity:
            raise CapacityExceeded(f"all {self.capacity} slots are busy")
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def wait_idle(self, within: float) -> bool:
        """True when every slot was released within `within` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, within))
        except TimeoutError:
            return False
        return True
