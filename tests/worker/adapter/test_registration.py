"""Live Runner registration from the adapter, and the `serve` command's settings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from lpbyoc_worker.adapter import command
from lpbyoc_worker.liverunner import LiveRunnerConfig, LiveRunnerHeartbeat

from .harness import AdapterFactory

ORCH_SECRET = "orch-secret"


class OrchestratorDouble:
    """go-livepeer's `/runners/heartbeat` and unregister, as doc/live-runner.md describes them."""

    def __init__(self) -> None:
        self.heartbeats: list[dict] = []
        self.unregistered: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/runners/heartbeat", self._heartbeat)
        self.app.router.add_post("/runners/{runner_id}/unregister", self._unregister)
        self.url = ""

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.headers.get("Authorization") not in (ORCH_SECRET, "hb-secret"):
            return web.Response(status=401)
        self.heartbeats.append(body)
        answer = {
            "runner_id": "runner-1",
            "heartbeat_interval": "5s",
            "heartbeat_ttl": "20s",
            "session_ids": [],
        }
        if request.headers["Authorization"] == ORCH_SECRET:
            answer["heartbeat_secret"] = "hb-secret"
        return web.json_response(answer)

    async def _unregister(self, request: web.Request) -> web.Response:
        self.unregistered.append(request.match_info["runner_id"])
        return web.Response(status=204)


@pytest.fixture
async def orchestrator() -> AsyncIterator[OrchestratorDouble]:
    double = OrchestratorDouble()
    runner = web.AppRunner(double.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    double.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield double
    await runner.cleanup()


def heartbeat(orchestrator: OrchestratorDouble) -> LiveRunnerHeartbeat:
    return LiveRunnerHeartbeat(
        LiveRunnerConfig(
            orchestrator_url=orchestrator.url,
            orch_secret=ORCH_SECRET,
            runner_url="http://10.0.0.7:8000",
            app="tiny-conv",
            capacity=2,
        )
    )


async def test_registers_only_once_the_model_is_ready_and_unregisters_on_drain(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, orchestrator: OrchestratorDouble
) -> None:
    not_ready = await start_adapter(model_name="not-loaded", live_runner=heartbeat(orchestrator))
    await asyncio.sleep(0.5)
    assert orchestrator.heartbeats == []  # a runner without its model must not be routable
    async with http.get(f"{not_ready.url}/registration") as resp:
        assert resp.status == 200
        assert (await resp.json())["registered"] is False

    running = await start_adapter(live_runner=heartbeat(orchestrator))
    await running.wait_ready()
    async with asyncio.timeout(10):
        while True:
            async with http.get(f"{running.url}/registration") as resp:
                state = await resp.json()
            if state["registered"]:
                break
            await asyncio.sleep(0.05)
    assert state["runnerId"] == "runner-1" and state["app"] == "tiny-conv"
    assert "orch-secret" not in str(state) and "hb-secret" not in str(state)
    assert orchestrator.heartbeats[0]["runner_url"] == "http://10.0.0.7:8000"
    assert orchestrator.heartbeats[0]["capacity"] == 2
    # Draining unregisters at once: no new sessions while in-flight work finishes.
    await running.adapter.drain()
    assert orchestrator.unregistered == ["runner-1"]
    async with http.get(f"{running.url}/registration") as resp:
        assert (await resp.json())["state"] == "stopped"
    await running.adapter.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_settings_from_arguments_and_auth_token_env() -> None:
    args = parse(["--model-id", "o/m", "--capacity", "3", "--max-body-bytes", "4096", "--max-side", "512"])
    settings = command.settings_from_args(args, {"AUTH_TOKEN": "tok"})
    assert (settings.model_id, settings.capacity, settings.max_body_bytes) == ("o/m", 3, 4096)
    assert settings.limits.max_side == 512 and settings.auth_token == "tok"
    assert command.settings_from_args(args, {"AUTH_TOKEN": ""}).auth_token is None
    with pytest.raises(ValueError, match="capacity"):
        command.settings_from_args(parse(["--model-id", "o/m", "--capacity", "0"]), {})


def test_live_runner_from_environment() -> None:
    assert command.build_live_runner(parse(["--model-id", "m"]), {}) is None
    env = {
        "LIVE_RUNNER_ORCHESTRATOR_URL": "https://orch:8935",
        "LIVE_RUNNER_ORCH_SECRET": "s",
        "LIVE_RUNNER_APP": "tiny-conv",
        "POD_IP": "10.1.2.3",
    }
    runner = command.build_live_runner(parse(["--model-id", "m", "--port", "9000", "--live-runner"]), env)
    assert isinstance(runner, LiveRunnerHeartbeat)
    assert runner.config.runner_url == "http://10.1.2.3:9000"
    with pytest.raises(ValueError, match="LIVE_RUNNER_ORCH_SECRET"):
        command.build_live_runner(
            parse(["--model-id", "m", "--live-runner"]), {**env, "LIVE_RUNNER_ORCH_SECRET": ""}
        )


def test_live_runner_takes_app_and_capacity_from_the_command_line() -> None:
    """The operator passes the capability name and capacity as flags, not LIVE_RUNNER_* variables."""
    env = {"ORCH_URL": "https://orch:8935", "ORCH_SECRET": "s", "POD_IP": "10.1.2.3"}
    args = parse(["--model-id", "m", "--capability", "live-restyle", "--capacity", "3", "--live-runner"])
    runner = command.build_live_runner(args, env)
    assert isinstance(runner, LiveRunnerHeartbeat)
    assert (runner.config.app, runner.config.capacity) == ("live-restyle", 3)
    assert runner.config.runner_url == "http://10.1.2.3:8000"
    named = command.build_live_runner(args, {**env, "LIVE_RUNNER_APP": "comfyui"})
    assert isinstance(named, LiveRunnerHeartbeat) and named.config.app == "comfyui"
