"""Small pure parts: schema validation, the capacity gate, bearer checks, the live frame picker."""

from __future__ import annotations

import asyncio

import pytest
from lpbyoc_worker.adapter.app import bearer_token_ok, is_protected
from lpbyoc_worker.adapter.backend import triton_error
from lpbyoc_worker.adapter.errors import RequestError
from lpbyoc_worker.adapter.gate import CapacityExceeded, CapacityGate
from lpbyoc_worker.adapter.live import LatestFramePicker
from lpbyoc_worker.adapter.metrics import AdapterMetrics
from lpbyoc_worker.adapter.schema import published_schema, validate_job_input
from lpbyoc_worker.inference import InferenceFailed, InvalidInput, TritonUnavailable


def test_schema_accepts_valid_and_names_the_bad_field() -> None:
    assert validate_job_input({"image": "aGk=", "params": {"format": "jpeg"}})["params"]["format"] == "jpeg"
    with pytest.raises(RequestError) as err:
        validate_job_input({"image": "aGk=", "params": {"format": "gif"}})
    assert err.value.status == 422 and "params/format" in err.value.msg
    with pytest.raises(RequestError) as err:
        validate_job_input({"params": {}})
    assert "'image' is a required property" in err.value.msg
    with pytest.raises(RequestError) as err:
        validate_job_input([1, 2])
    assert "at body" in err.value.msg
    schema = published_schema()
    assert schema["path"] == "/v1/infer" and schema["input"]["required"] == ["image"]


async def test_gate_refuses_beyond_capacity_and_reports_idle() -> None:
    gate = CapacityGate(2)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    assert gate.in_flight == 2
    with pytest.raises(CapacityExceeded):
        async with gate.slot():
            pass
    assert not await gate.wait_idle(within=0.05)
    release.set()
    assert await gate.wait_idle(within=1.0)
    await asyncio.gather(*holders)
    async with gate.slot():
        assert gate.in_flight == 1


def test_bearer_check() -> None:
    assert bearer_token_ok("Bearer s3cret", "s3cret")
    assert bearer_token_ok("bearer s3cret", "s3cret")
    assert not bearer_token_ok("Bearer wrong", "s3cret")
    assert not bearer_token_ok("s3cret", "s3cret")
    assert not bearer_token_ok(None, "s3cret")
    assert is_protected("/v1/infer") and is_protected("/stream/start") and is_protected("/image-to-image")
    assert not is_protected("/health") and not is_protected("/ready") and not is_protected("/metrics")


async def test_picker_keeps_newest_frames_and_counts_drops() -> None:
    metrics = AdapterMetrics()
    picker = LatestFramePicker(max_pending=2, metrics=metrics)
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item in ("f0", "f1", "f2", "f3", "f4"):
        queue.put_nowait(item)
    # 5 queued, 2 allowed to wait: f0..f2 dropped, f3 handed out, f4 left waiting.
    assert await picker.process_video_queue(queue, timeout=1) == "f3"
    assert picker.dropped == 3
    assert await picker.process_video_queue(queue, timeout=1) == "f4"
    for item in ("f5", "f6", "f7", None):  # None: end of stream, last in the queue, never dropped
        queue.put_nowait(item)
    assert await picker.process_video_queue(queue, timeout=1) == "f7"
    assert await picker.process_video_queue(queue, timeout=1) is None
    assert picker.dropped == 5
    assert metrics.queue_drops._value.get() == 5


def test_triton_errors_map_to_statuses_without_internals() -> None:
    unavailable = triton_error(TritonUnavailable("Triton at 127.0.0.1:8011 unreachable"))
    assert unavailable.status == 503 and unavailable.headers == {"Retry-After": "1"}
    assert "unreachable" in unavailable.msg
    failed = triton_error(InferenceFailed("python backend raised"))
    assert failed.status == 502 and failed.msg.endswith("python backend raised")
    assert triton_error(InvalidInput("dimension 0 must be 3")).status == 400
    internal = triton_error(RuntimeError("secret internals /etc/passwd"))
    assert internal.status == 500 and "secret" not in internal.msg
