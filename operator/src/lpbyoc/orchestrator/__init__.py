"""Attaching capabilities to go-livepeer orchestrators: aiModels.json, BYOC registration, Live Runner.

The reconcile calls `sync(view, kube)` for the `Registered` condition and `detach(view, kube)`
from its finalizer; `lpbyoc.orchestrator.handlers` registers the kopf index and event handler
that feed the aiModels writer. One `Orchestration` per operator process holds the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lpbyoc.kube import Kube
from lpbyoc.orchestrator import aimodels, liverunner
from lpbyoc.orchestrator.aimodels_writer import AiModelsWriter
from lpbyoc.orchestrator.byoc import ByocRegistrar
from lpbyoc.view import CapabilityView, ConditionResult

__all__ = ["Orchestration", "aimodels", "bind", "detach", "orchestration", "reset", "sync"]


@dataclass
class Orchestration:
    writer: AiModelsWriter = field(default_factory=AiModelsWriter)
    registrar: ByocRegistrar = field(default_factory=ByocRegistrar)

    def bind(self, kube: Kube, trigger: Callable[[tuple[str, str]], None] | None = None) -> None:
        """At operator start: the API client, and how to ask for a reconcile of (namespace, name)
        when a condition changes outside a reconcile (a file written, a re-registration failed)."""
        self.writer.kube = kube
        self.registrar.bind(kube, trigger)
        if trigger is not None:

            def trigger_all(keys: list[tuple[str, str]]) -> None:
                for key in keys:
                    trigger(key)

            self.writer.on_flushed = trigger_all

    async def sync(self, view: CapabilityView, kube: Kube) -> ConditionResult:
        integration = view.spec.capability.integration
        if integration != "byoc":
            await self.registrar.release(view.key, kube)  # it was byoc before: unregister that
        if integration == "aiModels":
            self.writer.kube = kube
            # No waiting for the write here: the reconcile of a burst must not serialise on the
            # debounce. `writer.on_flushed` asks for a new reconcile once the file is written.
            self.writer.observe(view)
            return self.writer.condition(view)
        if integration == "byoc":
            return await self.registrar.sync(view, kube)
        return await liverunner.sync(view)

    async def detach(self, view: CapabilityView, kube: Kube) -> None:
        integration = view.spec.capability.integration
        if integration == "aiModels":
            self.writer.kube = kube
            self.writer.forget(view)
        elif integration == "byoc":
            await self.registrar.detach(view, kube)
        # liveRunner: each pod unregisters itself when it stops; the TTL covers a pod that cannot.

    async def close(self) -> None:
        await self.writer.close()
        await self.registrar.close()


_current = Orchestration()


def orchestration() -> Orchestration:
    return _current


def reset() -> Orchestration:
    """A fresh state (a new operator run in the same process, e.g. tests)."""
    global _current
    _current = Orchestration()
    return _current


def bind(kube: Kube, trigger: Callable[[tuple[str, str]], None] | None = None) -> None:
    """Called once at operator start (see `Orchestration.bind`)."""
    _current.bind(kube, trigger)


async def sync(view: CapabilityView, kube: Kube) -> ConditionResult:
    """The `Registered` condition for one capability; idempotent and cheap when nothing changed."""
    return await _current.sync(view, kube)


async def detach(view: CapabilityView, kube: Kube) -> None:
    """On delete (finalizer): unregister from BYOC, drop from aiModels.json."""
    await _current.detach(view, kube)
