"""BYOC: register each capability with its orchestrator (`POST /capability/register`).

Who registers: the operator, not the worker pods. The orchSecret then stays in the
operator's namespace instead of being mounted into every GPU pod, and one registrant sends
one capacity (ready replicas x capacity per replica, behind the Service URL) instead of
replicas racing each other with their own numbers: the orchestrator keeps one entry per
name and the last registration wins.

Keeping the registration alive: go-livepeer keeps registrations in memory only and offers
no call, authenticated by the orchSecret, that lists them, so a restart cannot be detected
from outside. The registrar therefore re-registers on a cadence (`reregister_s`, 25 s by
default, inside the 30 s the orchestrator may go without us). The cost, read in
core/external_capabilities.go: a registration replaces the entry and with it the load
counter, so jobs in flight at that instant stop counting against capacity until they end;
the gateway may over-admit by at most that many jobs for one job's duration, and the
adapter answers 503 past its own concurrency, which the gateway retries elsewhere. A stale
registration after a restart (capability unknown, all jobs to this worker failing) costs
more than that, so the cadence wins.

Failures get a specific reason and an exponential backoff (1 s doubling to 60 s); during the
backoff `sync` answers from memory without calling the orchestrator.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lpbyoc.kube import Kube, KubeError
from lpbyoc.orchestrator import http
from lpbyoc.orchestrator.backoff import Backoff
from lpbyoc.orchestrator.http import OrchestratorError, TLSChoice
from lpbyoc.spec import OrchestratorRef, SecretKeyRef, parse_spec
from lpbyoc.view import CapabilityView, ConditionResult

logger = logging.getLogger(__name__)

REGISTER_PATH = "/capability/register"
UNREGISTER_PATH = "/capability/unregister"
DEFAULT_REREGISTER_S = 25.0
# A client unused this long is closed (its TLS setting left every capability); far above the
# re-registration cadence, so a client in use is never closed under a request.
CLIENT_IDLE_S = 300.0


def registration_body(view: CapabilityView, token: str | None) -> dict[str, Any]:
    """The JSON go-livepeer's ExternalCapability unmarshals (core/external_capabilities.go)."""
    spec = view.spec
    body: dict[str, Any] = {
        "name": spec.capability.name,
        "description": spec.capability.description,
        "url": view.endpoint,
        "capacity": view.capacity,
        "price_per_unit": spec.pricing.price_per_unit,
        "price_scaling": spec.pricing.price_scaling,
        "currency": spec.pricing.currency,
    }
    if token:
        body["token"] = token
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def base_url(ref: OrchestratorRef) -> str:
    return (ref.url or "").rstrip("/")


@dataclass(frozen=True)
class _KeptView:
    """The last view `sync` saw, kept for the cadence with its spec as JSON: a parsed spec costs
    ~10 KB per capability and the cadence needs it once per `reregister_s`."""

    fields: tuple[tuple[str, Any], ...]  # every field of the view but the spec
    spec_json: str
    worker_available: bool

    @staticmethod
    def of(view: CapabilityView) -> _KeptView:
        fields = tuple((f.name, getattr(view, f.name)) for f in dataclasses.fields(view) if f.name != "spec")
        return _KeptView(fields, view.spec.model_dump_json(by_alias=True), view.worker_available)

    def view(self) -> CapabilityView:
        return CapabilityView(**dict(self.fields), spec=parse_spec(json.loads(self.spec_json)))


@dataclass
class _State:
    orchestrator_url: str = ""
    name: str = ""
    registered_at: float | None = None
    failures: int = 0
    next_attempt: float = 0.0
    inputs: str = ""  # digest of what the last attempt was made from; a change skips the backoff
    condition: ConditionResult = field(default_factory=lambda: ConditionResult("Unknown", "Pending"))
    kept: _KeptView | None = None
    synced_at: float = 0.0  # when the reconcile last called sync for it


async def read_required_secret(kube: Kube, namespace: str, ref: SecretKeyRef, what: str) -> str:
    try:
        value = await kube.read_secret(namespace, ref)
    except KubeError as exc:
        raise OrchestratorError("SecretNotFound", f"{what} Secret {ref.name}: {exc}") from exc
    if value is None:
        raise OrchestratorError(
            "SecretNotFound", f"{what} Secret {ref.name} key {ref.key} not found in {namespace}"
        )
    return value.strip()


async def tls_choice(kube: Kube, namespace: str, ref: OrchestratorRef) -> TLSChoice:
    ca_ref = ref.tls.ca_bundle_secret_ref
    ca_pem = await read_required_secret(kube, namespace, ca_ref, "CA bundle") if ca_ref else None
    return TLSChoice(ca_pem=ca_pem, insecure_skip_verify=ref.tls.insecure_skip_verify)


class ByocRegistrar:
    def __init__(
        self,
        *,
        reregister_s: float = DEFAULT_REREGISTER_S,
        backoff: Backoff | None = None,
        timeout_s: float = http.DEFAULT_TIMEOUT_S,
        forget_after_s: float = 1800.0,
        client_idle_s: float = CLIENT_IDLE_S,
    ) -> None:
        self.reregister_s = reregister_s
        self.forget_after_s = forget_after_s
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=60.0)
        self.timeout_s = timeout_s
        self.client_idle_s = client_idle_s
        self.clients = http.Clients(timeout_s)
        self.attempts = 0  # register calls sent, for tests and the benchmark
        self._states: dict[str, _State] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._kube: Kube | None = None
        self._trigger: Callable[[tuple[str, str]], None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    def bind(self, kube: Kube, trigger: Callable[[tuple[str, str]], None] | None) -> None:
        self._kube = kube
        self._trigger = trigger

    def _inputs(self, view: CapabilityView) -> str:
        spec = view.spec
        text = json.dumps(
            [
                view.endpoint,
                view.capacity,
                view.worker_available,
                spec.capability.model_dump(mode="json"),
                spec.pricing.model_dump(mode="json"),
                spec.orchestrator.model_dump(mode="json"),
                spec.serving.token_secret_ref.model_dump(mode="json")
                if spec.serving.token_secret_ref
                else None,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()  # only compared: the digest is enough

    async def sync(self, view: CapabilityView, kube: Kube) -> ConditionResult:
        self._kube = kube
        self._ensure_ticker()
        lock = self._locks.setdefault(view.key, asyncio.Lock())
        async with lock:
            state = self._states.setdefault(view.key, _State())
            state.kept = _KeptView.of(view)
            state.synced_at = time.monotonic()
            return await self._sync_locked(view, kube, state, time.monotonic())

    async def _sync_locked(
        self, view: CapabilityView, kube: Kube, state: _State, now: float
    ) -> ConditionResult:
        if not view.worker_available or view.capacity <= 0:
            if state.registered_at is not None:
                await self._unregister_quietly(view, kube, state)
            state.condition = ConditionResult(
                "False", "WaitingForWorker", "registered once the worker Service has a ready replica"
            )
            return state.condition
        inputs = self._inputs(view)
        changed = inputs != state.inputs
        due_refresh = state.registered_at is not None and now - state.registered_at >= self.reregister_s
        if not changed and not due_refresh and state.failures == 0 and state.registered_at is not None:
            return state.condition  # cheap path: nothing changed, registration fresh
        if not changed and state.failures and now < state.next_attempt:
            return state.condition  # backing off
        state.inputs = inputs
        try:
            await self._register(view, kube, state)
        except OrchestratorError as exc:
            state.failures += 1
            delay = self.backoff.delay(state.failures)
            state.next_attempt = now + delay
            state.condition = ConditionResult(
                "False", exc.reason, f"{exc.message} (next attempt in {delay:.0f}s)"
            )
            logger.warning("byoc %s: %s", view.key, state.condition.message)
            return state.condition
        state.failures = 0
        state.registered_at = time.monotonic()
        state.condition = ConditionResult(
            "True",
            "Registered",
            f"registered {view.spec.capability.name} at {base_url(view.spec.orchestrator)} "
            f"with capacity {view.capacity} (url {view.endpoint})",
        )
        return state.condition

    async def _register(self, view: CapabilityView, kube: Kube, state: _State) -> None:
        ref = view.spec.orchestrator
        if ref.url is None or ref.secret_ref is None:
            raise OrchestratorError(
                "InvalidOrchestrator", "orchestrator.url and orchestrator.secretRef are required"
            )
        secret = await read_required_secret(kube, view.namespace, ref.secret_ref, "orchSecret")
        token_ref = view.spec.serving.token_secret_ref
        token = (
            await read_required_secret(kube, view.namespace, token_ref, "worker token") if token_ref else None
        )
        tls = await tls_choice(kube, view.namespace, ref)
        body = registration_body(view, token)
        url = base_url(ref)
        moved = state.registered_at is not None and (state.orchestrator_url, state.name) != (
            url,
            body["name"],
        )
        client = self.clients.get(tls)
        if moved:
            # The name or the orchestrator changed: take the old entry down first (best effort).
            with contextlib.suppress(OrchestratorError):
                await self._post_unregister(client, state.orchestrator_url, secret, state.name)
        self.attempts += 1
        response = await http.post(
            client,
            url + REGISTER_PATH,
            secret=secret,
            content=encode(body),
            content_type="application/json",
        )
        http.raise_for_answer(response, "register")
        state.orchestrator_url, state.name = url, str(body["name"])
        logger.info("byoc %s registered at %s (capacity %d)", view.key, url, view.capacity)

    async def _post_unregister(self, client: Any, url: str, secret: str, name: str) -> None:
        response = await http.post(
            client, url + UNREGISTER_PATH, secret=secret, content=name.encode(), content_type="text/plain"
        )
        http.raise_for_answer(response, "unregister")

    async def _unregister_quietly(self, view: CapabilityView, kube: Kube, state: _State) -> None:
        try:
            await self.unregister(view, kube, state)
        except OrchestratorError as exc:
            logger.warning("byoc %s: unregister failed: %s", view.key, exc)
        state.registered_at = None
        state.inputs = ""

    async def unregister(self, view: CapabilityView, kube: Kube, state: _State | None = None) -> None:
        """`POST /capability/unregister` with the raw name as the body; raises OrchestratorError."""
        ref = view.spec.orchestrator
        if ref.url is None or ref.secret_ref is None:
            return
        state = state or self._states.get(view.key) or _State()
        url = state.orchestrator_url or base_url(ref)
        name = state.name or view.spec.capability.name
        secret = await read_required_secret(kube, view.namespace, ref.secret_ref, "orchSecret")
        tls = await tls_choice(kube, view.namespace, ref)
        await self._post_unregister(self.clients.get(tls), url, secret, name)
        logger.info("byoc %s unregistered from %s", view.key, url)

    async def release(self, key: str, kube: Kube) -> None:
        """The capability left byoc mode (or its orchestrator): take down what was registered."""
        state = self._states.get(key)
        if state is not None and state.kept is not None:
            try:
                await self.detach(state.kept.view(), kube)
            except OrchestratorError as exc:
                logger.warning("byoc %s: unregister after leaving byoc failed: %s", key, exc)
                self._states.pop(key, None)

    async def detach(self, view: CapabilityView, kube: Kube) -> None:
        """On delete: unregister, then forget. Raises OrchestratorError so the finalizer retries,
        except when the orchestrator is unreachable for good reasons the finalizer cannot fix."""
        lock = self._locks.setdefault(view.key, asyncio.Lock())
        async with lock:
            state = self._states.get(view.key)
            try:
                await self.unregister(view, kube, state)
            except OrchestratorError as exc:
                # A forgotten orchestrator (down, restarted) holds no entry to remove; a wrong or
                # missing secret would block deletion forever. Only a transient error retries.
                if exc.reason in ("Timeout",):
                    raise
                logger.warning("byoc %s: unregister on delete skipped: %s", view.key, exc)
            self._states.pop(view.key, None)
        self._locks.pop(view.key, None)

    # -- the re-registration cadence -----------------------------------------------------------

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_forever(), name="byoc-reregister"
            )

    async def _tick_forever(self) -> None:
        period = max(0.05, min(self.reregister_s, self.backoff.initial_s) / 2)
        while True:
            await asyncio.sleep(period)
            await self.tick()

    async def tick(self) -> None:
        """Re-register what is due, and retry what failed once its backoff ran out."""
        kube = self._kube
        if kube is None:
            return
        now = time.monotonic()
        for key, state in list(self._states.items()):
            kept = state.kept
            if now - state.synced_at > self.forget_after_s:
                # The reconcile stopped asking (the object is gone without its finalizer running):
                # stop refreshing a registration nobody owns; the orchestrator drops it on failure.
                self._states.pop(key, None)
                continue
            if kept is None or not kept.worker_available:
                continue
            due = (state.registered_at is not None and now - state.registered_at >= self.reregister_s) or (
                state.failures and now >= state.next_attempt
            )
            if due:
                view = kept.view()
                async with self._locks.setdefault(key, asyncio.Lock()):
                    if key not in self._states:
                        continue
                    before = state.condition
                    after = await self._sync_locked(view, kube, state, time.monotonic())
                if self._trigger is not None and (after.status, after.reason) != (
                    before.status,
                    before.reason,
                ):
                    self._trigger((view.namespace, view.name))
        await self.clients.close_idle(self.client_idle_s)

    def condition(self, key: str) -> ConditionResult | None:
        state = self._states.get(key)
        return None if state is None else state.condition

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.clients.close()
