"""Live Runner heartbeats from inside the worker pod (go-livepeer `ai/runner/live_runner.go`).

Why the pod and not the operator: a live runner is routable exactly while its heartbeats
arrive, and the orchestrator drops it `heartbeat_ttl` (20 s) after they stop. Sent from the
pod, heartbeats stop when the pod dies, is evicted or loses its network, so the orchestrator
learns of the loss from the TTL with no one else involved. Sent from the operator, a dead pod
would keep being advertised until the operator noticed, and an operator restart would drop
every runner at once. The adapter starts one `LiveRunnerHeartbeat` per pod and serves
`state()` at `GET /registration`, which the operator reads for the `Registered` condition.

Protocol: the first `POST /runners/heartbeat` carries the orchSecret in `Authorization`; the
answer holds `runner_id`, `heartbeat_interval`, `heartbeat_ttl` (Go durations such as "5s",
or seconds) and, that first time only, `heartbeat_secret`, which authorises every later
heartbeat and `POST /runners/{id}/unregister`. A 404 means the orchestrator expired the
runner; a 401 to the heartbeat secret means it no longer knows the runner at all (after a
restart go-livepeer treats an unknown runner id as a new registration and checks the
orchSecret). Either way: bootstrap again with the orchSecret and no runner id, so the
orchestrator assigns a fresh id instead of answering 404 for an expired one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger(__name__)

HEARTBEAT_PATH = "/runners/heartbeat"
DEFAULT_INTERVAL_S = 5.0
MAX_BACKOFF_S = 60.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, default: float) -> float:
    """Seconds from a Go duration string ("5s", "1m30s", "500ms") or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and value:
        parts = _DURATION_PART.findall(value)
        if parts and "".join(n + u for n, u in parts) == value:
            seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
            if seconds > 0:
                return seconds
    return default


@dataclass(frozen=True)
class LiveRunnerConfig:
    orchestrator_url: str
    orch_secret: str = field(repr=False)
    runner_url: str
    app: str
    capacity: int = 1
    mode: str = "persistent"
    version: str = ""
    price: str = ""  # price_info.price as a decimal string; empty sends no price_info
    price_currency: str = "usd"
    price_unit: str = "hour"
    gpu: dict[str, Any] | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 5.0

    def body(self, runner_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "runner_url": self.runner_url,
            "app": self.app,
            "capacity": self.capacity,
            "mode": self.mode,
            "status": "ready",
        }
        if runner_id:
            body["runner_id"] = runner_id
        if self.version:
            body["version"] = self.version
        if self.gpu:
            body["gpu"] = self.gpu
        if self.price:
            body["price_info"] = {
                "price": self.price,
                "currency": self.price_currency,
                "unit": self.price_unit,
            }
        return body

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure_skip_verify:
            return False
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        return True

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> LiveRunnerConfig:
        """Build from `LIVE_RUNNER_*` variables (`ORCH_URL`/`ORCH_SECRET` also accepted, the names
        the operator and pytrickle use); keyword overrides (e.g. from the adapter's own
        `--capability`, `--capacity`, `--port`) win.

        `runner_url` defaults to `http://$POD_IP:$LIVE_RUNNER_PORT`: the pod's own address, so
        each replica is its own runner.
        """
        env = dict(os.environ if environ is None else environ)
        pod_ip = env.get("POD_IP", "")
        port = overrides.pop("port", None) or env.get("LIVE_RUNNER_PORT", "8000")
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        gpu: dict[str, Any] | None = None
        if env.get("LIVE_RUNNER_GPU_NAME") or env.get("LIVE_RUNNER_GPU_ID"):
            gpu = {"id": env.get("LIVE_RUNNER_GPU_ID", "0"), "name": env.get("LIVE_RUNNER_GPU_NAME", "")}
            if env.get("LIVE_RUNNER_GPU_VRAM_MB"):
                gpu["vram_mb"] = int(env["LIVE_RUNNER_GPU_VRAM_MB"])
        values: dict[str, Any] = {
            "orchestrator_url": (env.get("LIVE_RUNNER_ORCHESTRATOR_URL") or env.get("ORCH_URL") or "").rstrip(
                "/"
            ),
            "orch_secret": (env.get("LIVE_RUNNER_ORCH_SECRET") or env.get("ORCH_SECRET") or "").strip(),
            "runner_url": env.get("LIVE_RUNNER_URL") or (f"http://{host}:{port}" if pod_ip else ""),
            "app": env.get("LIVE_RUNNER_APP", ""),
            "capacity": int(env.get("LIVE_RUNNER_CAPACITY", "1")),
            "mode": env.get("LIVE_RUNNER_MODE", "persistent"),
            "version": env.get("LIVE_RUNNER_VERSION", ""),
            "price": env.get("LIVE_RUNNER_PRICE", ""),
            "price_currency": env.get("LIVE_RUNNER_PRICE_CURRENCY", "usd"),
            "price_unit": env.get("LIVE_RUNNER_PRICE_UNIT", "hour"),
            "gpu": gpu,
            "ca_file": env.get("LIVE_RUNNER_CA_FILE") or None,
            "insecure_skip_verify": env.get("LIVE_RUNNER_INSECURE_SKIP_VERIFY", "").lower()
            in ("1", "true", "yes"),
        }
        values.update(overrides)
        required = {
            "orchestrator_url": "LIVE_RUNNER_ORCHESTRATOR_URL (or ORCH_URL)",
            "orch_secret": "LIVE_RUNNER_ORCH_SECRET (or ORCH_SECRET)",
            "runner_url": "POD_IP (or LIVE_RUNNER_URL)",
            "app": "LIVE_RUNNER_APP (or the capability name)",
        }
        missing = [what for key, what in required.items() if not values.get(key)]
        if missing:
            raise ValueError(f"live runner registration needs {', '.join(missing)}")
        if int(values["capacity"]) < 0:
            raise ValueError("live runner capacity must be >= 0")
        return cls(**values)


class HeartbeatFailure(Exception):
    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status


class LiveRunnerHeartbeat:
    """One runner's registration loop: `await start()`, `await stop()`, `state()`."""

    def __init__(self, config: LiveRunnerConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client
        self._owns_client = client is None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.runner_id = ""
        self._heartbeat_secret = ""
        self.interval_s = DEFAULT_INTERVAL_S
        self.ttl_s = 0.0
        self.session_ids: list[str] = []
        self.phase = "stopped"  # stopped | bootstrapping | registered | failing
        self.last_heartbeat_at: float | None = None  # wall clock of the last accepted heartbeat
        self.last_error: dict[str, str] | None = None
        self.bootstraps = 0
        self.heartbeats = 0
        self._failures = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self.config.verify(), timeout=httpx.Timeout(self.config.timeout_s)
            )
        self.phase = "bootstrapping"
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-runner-heartbeat")

    async def stop(self) -> None:
        """Stop heartbeating and unregister, so the orchestrator stops routing at once, not after the TTL."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.runner_id and self._heartbeat_secret:
            try:
                await self._unregister()
            except HeartbeatFailure as exc:
                logger.warning("live runner unregister failed: %s", exc)
        self.runner_id, self._heartbeat_secret = "", ""
        self.phase = "stopped"
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def state(self) -> dict[str, Any]:
        """What `GET /registration` serves; holds no secret."""
        return {
            "integration": "liveRunner",
            "state": self.phase,
            "registered": self.phase == "registered",
            "orchestrator": self.config.orchestrator_url,
            "runnerUrl": self.config.runner_url,
            "runnerId": self.runner_id,
            "app": self.config.app,
            "capacity": self.config.capacity,
            "heartbeatIntervalSeconds": self.interval_s,
            "heartbeatTtlSeconds": self.ttl_s,
            "lastHeartbeatAt": self.last_heartbeat_at,
            "sessions": len(self.session_ids),
            "error": self.last_error,
        }

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                self._failures = 0
                delay = self.interval_s
            except HeartbeatFailure as exc:
                self._failures += 1
                self.last_error = {"reason": exc.reason, "message": exc.message}
                self.phase = "failing"
                # Retry soon enough to beat the TTL on a blip, without hammering a down orchestrator.
                cap = MAX_BACKOFF_S if exc.reason == "OrchestratorUnauthorized" else max(self.interval_s, 1.0)
                delay = min(cap, 0.5 * 2 ** (self._failures - 1))
                logger.warning("live runner heartbeat failed (%s); next try in %.1fs", exc, delay)
            await asyncio.sleep(delay)

    async def beat(self) -> None:
        """One heartbeat (or bootstrap); raises HeartbeatFailure."""
        if not self._heartbeat_secret:
            await self._bootstrap()
            return
        try:
            answer = await self._post_heartbeat(self._heartbeat_secret, self.runner_id)
        except HeartbeatFailure as exc:
            if exc.status not in (401, 404):
                raise
            logger.info("orchestrator forgot runner %s (%s); bootstrapping again", self.runner_id, exc.status)
            self.runner_id, self._heartbeat_secret = "", ""
            self.phase = "bootstrapping"
            await self._bootstrap()
            return
        self._accept(answer)

    async def _bootstrap(self) -> None:
        self.bootstraps += 1
        answer = await self._post_heartbeat(self.config.orch_secret, "")
        secret = str(answer.get("heartbeat_secret") or "")
        if not secret:
            raise HeartbeatFailure("ProtocolError", "bootstrap answer carried no heartbeat_secret")
        self._heartbeat_secret = secret
        self._accept(answer)
        logger.info("live runner %s registered at %s", self.runner_id, self.config.orchestrator_url)

    def _accept(self, answer: dict[str, Any]) -> None:
        self.runner_id = str(answer.get("runner_id") or self.runner_id)
        self.interval_s = parse_duration(answer.get("heartbeat_interval"), DEFAULT_INTERVAL_S)
        self.ttl_s = parse_duration(answer.get("heartbeat_ttl"), 4 * self.interval_s)
        self.session_ids = [str(s) for s in answer.get("session_ids") or ()]
        self.heartbeats += 1
        self.last_heartbeat_at = time.time()
        self.last_error = None
        self.phase = "registered"

    async def _post(self, path: str, secret: str, body: dict[str, Any] | None) -> httpx.Response:
        assert self._client is not None, "start() first"
        url = self.config.orchestrator_url + path
        try:
            return await self._client.post(url, json=body, headers={"Authorization": secret})
        except httpx.TimeoutException as exc:
            raise HeartbeatFailure("Timeout", f"no answer from {url}") from exc
        except httpx.TransportError as exc:
            reason = (
                "TLSError" if "SSL" in str(exc) or "CERTIFICATE" in str(exc) else "OrchestratorUnreachable"
            )
            raise HeartbeatFailure(reason, f"{url}: {exc or type(exc).__name__}") from exc

    async def _post_heartbeat(self, secret: str, runner_id: str) -> dict[str, Any]:
        response = await self._post(HEARTBEAT_PATH, secret, self.config.body(runner_id))
        if response.status_code in (401, 403):
            raise HeartbeatFailure(
                "OrchestratorUnauthorized",
                f"{response.status_code} {response.text.strip()[:200]}",
                response.status_code,
            )
        if response.status_code == 404:
            raise HeartbeatFailure("RunnerNotFound", response.text.strip()[:200], 404)
        if response.status_code >= 300:
            raise HeartbeatFailure(
                "HeartbeatRejected",
                f"{response.status_code} {response.text.strip()[:200]}",
                response.status_code,
            )
        try:
            answer = response.json()
        except ValueError as exc:
            raise HeartbeatFailure("ProtocolError", "heartbeat answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise HeartbeatFailure("ProtocolError", "heartbeat answer is not a JSON object")
        return answer

    async def _unregister(self) -> None:
        response = await self._post(f"/runners/{self.runner_id}/unregister", self._heartbeat_secret, None)
        if response.status_code not in (200, 204, 404):
            raise HeartbeatFailure(
                "UnregisterFailed", f"{response.status_code} {response.text.strip()[:200]}"
            )
