"""A go-livepeer orchestrator double on loopback: BYOC registration and the Live Runner registry.

Implements the contracts the operator and the worker speak to (see go-livepeer
`byoc/job_orchestrator.go`, `core/external_capabilities.go`, `ai/runner/live_runner.go`):
- `POST /capability/register`: `Authorization` must equal the orchSecret verbatim (a "Bearer"
  prefix is a wrong secret) → 400 "invalid authorization"; bad JSON → 400; non-POST → 405;
  success → 200 `ok`. Re-registering replaces the entry and resets its load to 0.
- `POST /capability/unregister`: same auth; body = the raw name; → 200 `ok`.
- `POST /runners/heartbeat`: unknown runner → orchSecret required (401 otherwise), answers
  `runner_id`, `heartbeat_interval`/`heartbeat_ttl` (Go durations), `heartbeat_secret` (first
  time only), `session_ids`; known runner → its heartbeat secret (401 otherwise); an expired or
  removed runner → 404. Body checks: absolute `runner_url`, trimmed non-empty `app`,
  capacity >= 0 (0 → 1), mode persistent|single-shot, price_info when `onchain`.
- `POST /runners/{id}/unregister` with the heartbeat secret → 204.
State is in memory; `restart()` forgets it all, as a restarted orchestrator does.
Plain HTTP, or TLS with a certificate from `trustme` (generated per test, never on disk in the repo).
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from aiohttp import web


def go_duration(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


@dataclass
class Capability:
    body: dict[str, Any]
    load: int = 0
    registered_at: float = field(default_factory=time.monotonic)


@dataclass
class Runner:
    runner_id: str
    heartbeat_secret: str
    request: dict[str, Any]
    last_heartbeat: float
    removed: bool = False


class OrchestratorDouble:
    def __init__(
        self,
        secret: str = "orch-secret",
        *,
        heartbeat_interval_s: float = 5.0,
        heartbeat_ttl_s: float = 20.0,
        onchain: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.secret = secret
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.onchain = onchain
        self.ssl_context = ssl_context
        self.capabilities: dict[str, Capability] = {}
        self.runners: dict[str, Runner] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        self.register_calls = 0
        self.unregistered: list[str] = []
        self.restarts = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> OrchestratorDouble:
        app = web.Application()
        app.router.add_route("*", "/capability/register", self._register)
        app.router.add_route("*", "/capability/unregister", self._unregister)
        app.router.add_route("*", "/runners/heartbeat", self._heartbeat)
        app.router.add_route("*", "/runners/{runner_id}/unregister", self._runner_unregister)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def restart(self) -> None:
        """Forget every registration and runner, as a restarted go-livepeer does."""
        self.capabilities.clear()
        self.runners.clear()
        self.restarts += 1

    def expire_now(self) -> None:
        """Age every runner past its TTL (as if its heartbeats had stopped)."""
        for runner in self.runners.values():
            runner.last_heartbeat -= self.heartbeat_ttl_s + 1

    def live_runners(self) -> dict[str, Runner]:
        now = time.monotonic()
        return {
            rid: r
            for rid, r in self.runners.items()
            if not r.removed and now - r.last_heartbeat <= self.heartbeat_ttl_s
        }

    # -- BYOC ----------------------------------------------------------------------------------

    def _log(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.method, request.path, auth))
        return auth

    async def _register(self, request: web.Request) -> web.StreamResponse:
        auth = self._log(request)
        if request.method != "POST":
            return web.Response(status=405, text="Method not allowed\n")
        if auth != self.secret:
            return web.Response(status=400, text="invalid authorization\n")
        self.register_calls += 1
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise ValueError("not an object with a name")
            for key in ("capacity", "price_per_unit", "price_scaling"):
                if key in body and (not isinstance(body[key], int) or isinstance(body[key], bool)):
                    raise ValueError(
                        f"json: cannot unmarshal {type(body[key]).__name__} into {key} of type int"
                    )
        except ValueError as exc:
            return web.Response(status=400, text=f"Error registering capability: {exc}")
        self.capabilities[body["name"]] = Capability(body=body)  # replaces the entry: load back to 0
        return web.Response(status=200, text="ok", content_type="application/json")

    async def _unregister(self, request: web.Request) -> web.StreamResponse:
        auth = self._log(request)
        if request.method != "POST":
            return web.Response(status=405, text="Method not allowed\n")
        if auth != self.secret:
            return web.Response(status=400, text="invalid authorization\n")
        name = (await request.read()).decode()
        self.capabilities.pop(name, None)
        self.unregistered.append(name)
        return web.Response(status=200, text="ok", content_type="application/json")

    # -- Live Runner ---------------------------------------------------------------------------

    def _validate(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "invalid body"
        parsed = urlparse(str(body.get("runner_url", "")))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            return "invalid runner_url"
        app = body.get("app")
        if not isinstance(app, str) or not app or app != app.strip():
            return "app must be trimmed"
        mode = body.get("mode") or "persistent"
        if mode not in ("persistent", "single-shot", "single_shot"):
            return 'mode must be "persistent" or "single-shot"'
        capacity = body.get("capacity", 0)
        if not isinstance(capacity, int) or capacity < 0:
            return "capacity must be >= 0"
        if self.onchain:
            price = (body.get("price_info") or {}).get("price")
            if not re.fullmatch(r"\d+(\.\d+)?", str(price or "")) or float(price) <= 0:
                return "price_info.price must be a positive decimal"
        return None

    def _answer(self, runner: Runner, secret: str = "") -> dict[str, Any]:
        answer: dict[str, Any] = {
            "runner_id": runner.runner_id,
            "orchestrator": self.url,
            "heartbeat_interval": go_duration(self.heartbeat_interval_s),
            "heartbeat_ttl": go_duration(self.heartbeat_ttl_s),
            "session_ids": [],
        }
        if secret:
            answer["heartbeat_secret"] = secret
        return answer

    async def _heartbeat(self, request: web.Request) -> web.StreamResponse:
        auth = self._log(request)
        if request.method != "POST":
            return web.Response(status=405, text="Method not allowed\n")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid JSON")
        problem = self._validate(body)
        if problem:
            return web.Response(status=400, text=problem)
        body["capacity"] = body.get("capacity") or 1
        runner_id = str(body.get("runner_id") or "").strip() or f"runner_{secrets.token_hex(4)}"
        runner = self.runners.get(runner_id)
        now = time.monotonic()
        if runner is None:
            if auth != self.secret:
                return web.Response(status=401, text="invalid registration authorization")
            secret = secrets.token_urlsafe(24)
            runner = Runner(runner_id, secret, body, now)
            self.runners[runner_id] = runner
            return web.json_response(self._answer(runner, secret))
        if runner.removed or now - runner.last_heartbeat > self.heartbeat_ttl_s:
            return web.Response(status=404, text="runner not found")
        if auth != runner.heartbeat_secret:
            return web.Response(status=401, text="invalid heartbeat authorization")
        runner.request, runner.last_heartbeat = body, now
        return web.json_response(self._answer(runner))

    async def _runner_unregister(self, request: web.Request) -> web.StreamResponse:
        auth = self._log(request)
        runner = self.runners.get(request.match_info["runner_id"])
        if (
            runner is None
            or runner.removed
            or time.monotonic() - runner.last_heartbeat > self.heartbeat_ttl_s
        ):
            return web.Response(status=404, text="runner not found")
        if auth != runner.heartbeat_secret:
            return web.Response(status=401, text="invalid authorization")
        runner.removed = True
        return web.Response(status=204)
