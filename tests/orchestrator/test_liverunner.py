"""Live Runner heartbeats from the worker side against the orchestrator double, and the operator
reading each pod's `GET /registration` for the Registered condition.

Stand-in: the worker pods' adapters are small aiohttp servers on 127.0.0.x that serve a real
`LiveRunnerHeartbeat.state()` (the adapter itself is tested in tests/worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from lpbyoc.orchestrator import liverunner as operator_side
from lpbyoc_worker.liverunner import LiveRunnerConfig, LiveRunnerHeartbeat, parse_duration

from tests.orchestrator.conftest import cr_body, view_of
from tests.support.orchestrator_double import OrchestratorDouble


@pytest_asyncio.fixture
async def fast_orch() -> AsyncIterator[OrchestratorDouble]:
    double = await OrchestratorDouble(
        secret="s3cret-orch", heartbeat_interval_s=0.1, heartbeat_ttl_s=0.5
    ).start()
    try:
        yield double
    finally:
        await double.close()


def config(orch: OrchestratorDouble, **changes: Any) -> LiveRunnerConfig:
    values: dict[str, Any] = {
        "orchestrator_url": orch.url,
        "orch_secret": "s3cret-orch",
        "runner_url": "http://10.1.2.3:8000",
        "app": "restyle",
        "capacity": 2,
        "price": "0.5",
        "gpu": {"id": "0", "name": "NVIDIA L4", "vram_mb": 23034},
    }
    values.update(changes)
    return LiveRunnerConfig(**values)


async def eventually(predicate: Any, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_bootstrap_then_heartbeats_with_the_returned_secret(fast_orch: OrchestratorDouble) -> None:
    runner = LiveRunnerHeartbeat(config(fast_orch))
    await runner.start()
    try:
        await eventually(lambda: runner.heartbeats >= 4, within=3.0)
    finally:
        await runner.stop()
    beats = [r for r in fast_orch.requests if r[1] == "/runners/heartbeat"]
    assert beats[0][2] == "s3cret-orch"  # bootstrap with the orchSecret
    registered = next(iter(fast_orch.runners.values()))
    assert all(auth == registered.heartbeat_secret for _, _, auth in beats[1:])
    assert runner.interval_s == pytest.approx(0.1)  # "100ms" from the orchestrator, not the 5 s default
    request = registered.request
    assert request["runner_url"] == "http://10.1.2.3:8000" and request["app"] == "restyle"
    assert request["capacity"] == 2 and request["gpu"]["name"] == "NVIDIA L4"
    assert request["price_info"] == {"price": "0.5", "currency": "usd", "unit": "hour"}
    assert runner.bootstraps == 1


async def test_orchestrator_restart_bootstraps_again(fast_orch: OrchestratorDouble) -> None:
    runner = LiveRunnerHeartbeat(config(fast_orch))
    await runner.start()
    try:
        await eventually(lambda: runner.phase == "registered", within=2.0)
        fast_orch.restart()
        # A restarted go-livepeer takes the now-unknown runner id for a new registration and
        # checks the orchSecret: the heartbeat secret gets 401, and the runner bootstraps again.
        await eventually(lambda: runner.bootstraps >= 2 and runner.phase == "registered", within=2.0)
        assert runner.runner_id in fast_orch.live_runners()
        bootstraps = [r for r in fast_orch.requests if r[1] == "/runners/heartbeat" and r[2] == "s3cret-orch"]
        assert len(bootstraps) == 2
    finally:
        await runner.stop()


async def test_expired_runner_answers_404_and_is_re_registered(fast_orch: OrchestratorDouble) -> None:
    runner = LiveRunnerHeartbeat(config(fast_orch))
    await runner.start()
    try:
        await eventually(lambda: runner.phase == "registered", within=2.0)
        first_id = runner.runner_id
        fast_orch.expire_now()
        await eventually(lambda: runner.bootstraps >= 2 and runner.phase == "registered", within=3.0)
        assert runner.runner_id != first_id and runner.runner_id in fast_orch.live_runners()
    finally:
        await runner.stop()


async def test_stop_unregisters_and_ttl_expires_when_heartbeats_stop(fast_orch: OrchestratorDouble) -> None:
    stopped = LiveRunnerHeartbeat(config(fast_orch, runner_url="http://10.0.0.1:8000"))
    await stopped.start()
    await eventually(lambda: stopped.phase == "registered", within=2.0)
    stopped_id = stopped.runner_id
    await stopped.stop()
    assert stopped_id not in fast_orch.live_runners()
    assert any(path == f"/runners/{stopped_id}/unregister" for _, path, _ in fast_orch.requests)

    crashed = LiveRunnerHeartbeat(config(fast_orch, runner_url="http://10.0.0.2:8000"))
    await crashed.start()
    await eventually(lambda: crashed.phase == "registered", within=2.0)
    crashed_id = crashed.runner_id
    assert crashed._task is not None
    crashed._task.cancel()  # the pod died: no unregister, heartbeats just stop
    assert crashed_id in fast_orch.live_runners()
    await asyncio.sleep(0.7)  # > TTL of 0.5 s
    assert crashed_id not in fast_orch.live_runners()


async def test_bad_secret_is_reported_in_state_without_the_secret(fast_orch: OrchestratorDouble) -> None:
    runner = LiveRunnerHeartbeat(config(fast_orch, orch_secret="wrong"))
    await runner.start()
    try:
        await eventually(lambda: runner.last_error is not None, within=2.0)
        state = runner.state()
        assert state["registered"] is False and state["error"]["reason"] == "OrchestratorUnauthorized"
        assert "wrong" not in repr(state) and "s3cret" not in repr(state)
    finally:
        await runner.stop()


def test_config_from_env_uses_the_pod_ip() -> None:
    cfg = LiveRunnerConfig.from_env(
        {
            "LIVE_RUNNER_ORCHESTRATOR_URL": "https://orch:8935/",
            "LIVE_RUNNER_ORCH_SECRET": "s\n",
            "LIVE_RUNNER_APP": "restyle",
            "LIVE_RUNNER_CAPACITY": "3",
            "POD_IP": "10.9.8.7",
            "LIVE_RUNNER_PORT": "8000",
        }
    )
    assert cfg.runner_url == "http://10.9.8.7:8000" and cfg.capacity == 3 and cfg.orch_secret == "s"
    assert cfg.orchestrator_url == "https://orch:8935"
    assert "orch_secret" not in repr(cfg)
    with pytest.raises(ValueError, match="POD_IP"):
        LiveRunnerConfig.from_env(
            {"LIVE_RUNNER_ORCHESTRATOR_URL": "x", "LIVE_RUNNER_ORCH_SECRET": "s", "LIVE_RUNNER_APP": "a"}
        )
    # The operator's adapter env (ORCH_URL, ORCH_SECRET, POD_IP) plus the adapter's own flags.
    adapter = LiveRunnerConfig.from_env(
        {"ORCH_URL": "https://orch:8935", "ORCH_SECRET": "s", "POD_IP": "10.0.0.5"},
        app="restyle",
        capacity=2,
        port=9000,
    )
    assert (adapter.runner_url, adapter.app, adapter.capacity) == ("http://10.0.0.5:9000", "restyle", 2)
    with pytest.raises(ValueError, match="ORCH_SECRET"):
        LiveRunnerConfig.from_env({"ORCH_URL": "https://orch:8935", "POD_IP": "10.0.0.5"}, app="restyle")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5s", 5.0), ("1m30s", 90.0), ("250ms", 0.25), (7, 7.0), ("bogus", 5.0), (None, 5.0)],
)
def test_go_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value, 5.0) == pytest.approx(seconds)


async def serve_registration(states: dict[str, dict[str, Any]]) -> tuple[list[web.AppRunner], int]:
    """One `/registration` server per pod IP (loopback addresses 127.0.0.x), all on one port."""
    runners: list[web.AppRunner] = []
    port = 0
    for ip, state in states.items():
        app = web.Application()

        async def handler(_: web.Request, state: dict[str, Any] = state) -> web.Response:
            return web.json_response(state)

        app.router.add_get("/registration", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, ip, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    return runners, port


async def test_operator_reads_registration_of_ready_pods(fast_orch: OrchestratorDouble) -> None:
    heartbeat = LiveRunnerHeartbeat(config(fast_orch))
    await heartbeat.start()
    await eventually(lambda: heartbeat.phase == "registered", within=2.0)
    good = heartbeat.state()
    await heartbeat.stop()
    bad = {"registered": False, "error": {"reason": "OrchestratorUnauthorized", "message": "401 invalid"}}
    runners, port = await serve_registration({"127.0.0.2": good, "127.0.0.3": good, "127.0.0.4": bad})
    body = cr_body("restyle", capability__integration="liveRunner", serving__port=port)
    try:
        all_good = await operator_side.sync(view_of(body, pod_ips=("127.0.0.2", "127.0.0.3")))
        assert (all_good.status, all_good.reason) == ("True", "Registered") and "2/2" in all_good.message
        partial = await operator_side.sync(view_of(body, pod_ips=("127.0.0.2", "127.0.0.4")))
        assert (partial.status, partial.reason) == (
            "True",
            "PartiallyRegistered",
        ) and "1/2" in partial.message
        failing = await operator_side.sync(view_of(body, pod_ips=("127.0.0.4",)))
        assert (failing.status, failing.reason) == ("False", "OrchestratorUnauthorized")
        silent = await operator_side.sync(view_of(body, pod_ips=("127.0.0.5",)))  # nothing listens
        assert (silent.status, silent.reason) == ("False", "RegistrationUnknown")
    finally:
        for runner in runners:
            await runner.cleanup()
    nobody = await operator_side.sync(view_of(body, pod_ips=()))
    assert (nobody.status, nobody.reason) == ("False", "WaitingForWorker")
