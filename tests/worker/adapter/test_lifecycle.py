"""Readiness, Triton outages, draining and SIGTERM, against the real Triton."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys

import aiohttp
import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image

from tests.support.triton import RunningTriton

from .harness import MODEL_ID, AdapterFactory, RunningAdapter


def png_bytes(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


async def get_status(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def wait_status(http: aiohttp.ClientSession, url: str, status: int, within: float = 30.0) -> dict:
    async with asyncio.timeout(within):
        while True:
            try:
                got, body = await get_status(http, url)
                if got == status:
                    return body
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def post_png(http: aiohttp.ClientSession, running: RunningAdapter) -> tuple[int, dict]:
    async with http.post(
        f"{running.url}/v1/infer", data=png_bytes(), headers={"Content-Type": "image/png"}
    ) as r:
        return r.status, await r.json()


async def test_ready_is_503_while_the_model_is_not_loaded(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    absent = await start_adapter(model_name="not-loaded")
    await asyncio.sleep(0.3)  # several polls
    status, body = await get_status(http, f"{absent.url}/ready")
    assert status == 503 and "not loaded" in body["detail"]["msg"]
    assert (await get_status(http, f"{absent.url}/health"))[1]["status"] == "LOADING"
    assert (await get_status(http, f"{absent.url}/healthz"))[0] == 200

    running = await start_adapter()
    await wait_status(http, f"{running.url}/ready", 200)
    client = triton_http.InferenceServerClient(triton_server.http_url.removeprefix("http://"))
    try:
        await asyncio.to_thread(client.unload_model, triton_server.model_name)
        body = await wait_status(http, f"{running.url}/ready", 503)
        assert "not loaded" in body["detail"]["msg"]
        status, answer = await post_png(http, running)
        assert status == 503 and "unavailable" in answer["detail"]["msg"]
    finally:
        await asyncio.to_thread(client.load_model, triton_server.model_name)
        client.close()
    await wait_status(http, f"{running.url}/ready", 200)
    assert (await post_png(http, running))[0] == 200


async def test_triton_killed_then_back(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession, triton_server: RunningTriton
) -> None:
    running = await start_adapter()
    await wait_status(http, f"{running.url}/ready", 200)
    try:
        await asyncio.to_thread(triton_server.kill)
        await wait_status(http, f"{running.url}/ready", 503)
        status, answer = await post_png(http, running)
        assert status == 503
        assert answer["detail"]["msg"].startswith("The inference server is unavailable")
        assert (await get_status(http, f"{running.url}/healthz"))[0] == 200  # alive: do not restart us
    finally:
        await asyncio.to_thread(triton_server.start)
    await wait_status(http, f"{running.url}/ready", 200)
    assert (await post_png(http, running))[0] == 200
    async with http.get(f"{running.url}/metrics") as resp:
        text = await resp.text()
    assert 'lpbyoc_adapter_requests_total{outcome="503",route="/v1/infer"} 1.0' in text
    assert "lpbyoc_adapter_model_ready 1.0" in text


async def test_drain_finishes_in_flight_and_refuses_new(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter(gated=True, capacity=4, drain_seconds=10)
    await running.wait_ready()
    in_flight = asyncio.create_task(post_png(http, running))
    await running.backend.wait_for_waiting(1)
    drain = asyncio.create_task(running.adapter.drain())
    await asyncio.sleep(0.05)
    status, body = await get_status(http, f"{running.url}/ready")
    assert status == 503 and body["detail"]["msg"] == "The adapter is shutting down."
    async with http.post(
        f"{running.url}/v1/infer", data=png_bytes(), headers={"Content-Type": "image/png"}
    ) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await r.json())["detail"]["msg"] == "The worker is shutting down."
    start = {"gateway_request_id": "late", "subscribe_url": "http://127.0.0.1:9/in"}
    async with http.post(f"{running.url}/stream/start", json=start) as r:
        assert r.status == 503 and (await r.json())["detail"]["msg"] == "The worker is shutting down."
    assert not drain.done()
    running.backend.release.set()
    assert (await in_flight)[0] == 200
    assert await asyncio.wait_for(drain, 5) is True


async def test_drain_gives_up_at_the_deadline(
    start_adapter: AdapterFactory, http: aiohttp.ClientSession
) -> None:
    running = await start_adapter(gated=True, drain_seconds=0.2)
    await running.wait_ready()
    stuck = asyncio.create_task(post_png(http, running))
    await running.backend.wait_for_waiting(1)
    assert await running.adapter.drain() is False
    running.backend.release.set()
    await stuck


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_sigterm_drains_then_exits_zero(
    triton_server: RunningTriton, http: aiohttp.ClientSession
) -> None:
    """`lpbyoc-worker serve` as the pod runs it; the in-flight request is held by uploading its body slowly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lpbyoc_worker.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--triton-grpc",
        triton_server.grpc_url,
        "--model-name",
        triton_server.model_name,
        "--model-id",
        MODEL_ID,
        "--capacity",
        "2",
        "--drain-seconds",
        "20",
        "--ready-poll-seconds",
        "0.1",
        env={**os.environ, "AUTH_TOKEN": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_status(http, f"{url}/ready", 200)
        body = png_bytes(64)
        half = asyncio.Event()
        finish = asyncio.Event()

        async def slow_body():
            yield body[: len(body) // 2]
            half.set()
            await finish.wait()
            yield body[len(body) // 2 :]

        async def slow_request() -> int:
            async with http.post(
                f"{url}/v1/infer", data=slow_body(), headers={"Content-Type": "image/png"}
            ) as r:
                await r.read()
                return r.status

        request = asyncio.create_task(slow_request())
        await half.wait()
        async with asyncio.timeout(10):
            while True:
                async with http.get(f"{url}/metrics") as metrics:
                    if "lpbyoc_adapter_in_flight 1.0" in await metrics.text():
                        break
                await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        await wait_status(http, f"{url}/ready", 503, within=5)
        assert (await get_status(http, f"{url}/healthz"))[0] == 200
        assert process.returncode is None  # still draining
        finish.set()
        assert await asyncio.wait_for(request, 10) == 200
        output, _ = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0, output.decode()
        assert "stopped (drained)" in output.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
