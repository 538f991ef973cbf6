"""Schemathesis from ai-runner's OpenAPI spec against the running adapter, one task worker per route.

Each served route gets a bounded, derandomized run of schema-generated requests (positive and
negative data); every answer must have a status the spec lists for the route, a JSON content type
and a body matching the spec's schema for that status. Half of the multipart cases carry a real
PNG (or WAV) instead of the random bytes schemathesis generates for `format: binary`, so 200s
are exercised too. The worker runs in its own thread and event loop (schemathesis calls are sync).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lpbyoc_worker.adapter.app import Adapter
from lpbyoc_worker.adapter.imaging import ImageLimits
from lpbyoc_worker.adapter.settings import AdapterSettings
from PIL import Image
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .standins import standin_backend
from .test_airunner import wav

SPEC = Path(__file__).resolve().parents[3].parent / "shared" / "ai-runner-openapi.yaml"
MODEL_ID = "lpbyoc-test/stand-in"
ROUTES = (
    "text-to-image",
    "image-to-image",
    "upscale",
    "image-to-video",
    "image-to-text",
    "audio-to-text",
    "segment-anything-2",
)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]

pytestmark = pytest.mark.skipif(not SPEC.is_file(), reason=f"{SPEC} not present")


class ThreadedAdapter:
    """An adapter with a stand-in runtime, serving from its own thread's event loop."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        adapter = Adapter(
            AdapterSettings(
                model_id=MODEL_ID,
                task=self.task,
                pipeline=self.task,
                host="127.0.0.1",
                port=0,
                ready_poll_seconds=0.05,
                # Small limits keep generated outputs small (the stand-ins honour height/width).
                limits=ImageLimits(max_side=1024, max_pixels=1024 * 1024),
                max_images_per_prompt=2,
                capacity=4,
            ),
            standin_backend(self.task),
        )
        await adapter.start()
        await adapter.readiness.wait_model_ready()
        self._stop = asyncio.Event()
        self.url = f"http://127.0.0.1:{adapter.port}"
        self._ready.set()
        await self._stop.wait()
        await adapter.close()

    def __enter__(self) -> ThreadedAdapter:
        self._thread.start()
        assert self._ready.wait(30), "adapter did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def schema() -> Any:
    assert SPEC.is_file(), (
        f"ai-runner's OpenAPI spec is expected at {SPEC} (the shared/ folder beside the checkout)"
    )
    return schemathesis.openapi.from_path(SPEC)


@pytest.fixture
def worker(request: pytest.FixtureRequest) -> Iterator[ThreadedAdapter]:
    with ThreadedAdapter(request.param) as running:
        yield running


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


REAL_MEDIA = {"image": _png(), "audio": wav(0.2)}


@pytest.mark.slow
@pytest.mark.parametrize("worker", ROUTES, indirect=True)
def test_route_conforms_to_ai_runner_spec(schema: Any, worker: ThreadedAdapter) -> None:
    operation = schema[f"/{worker.task}"]["POST"]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    statuses: list[int] = []

    @given(case=strategy, real_media=st.booleans())
    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, real_media: bool) -> None:
        if real_media and isinstance(case.body, dict):
            for field, data in REAL_MEDIA.items():
                if field in case.body:
                    case.body[field] = data
        response = case.call_and_validate(base_url=worker.url, checks=CHECKS, timeout=30)
        statuses.append(response.status_code)

    run()
    # Random values rarely all fall inside this worker's bounds: one minimal valid request as well.
    required = {"prompt": "a cat"} if worker.task in ("text-to-image", "image-to-image", "upscale") else {}
    media_field = {"audio-to-text": "audio", "text-to-image": None}.get(worker.task, "image")
    body = {**required, **({media_field: REAL_MEDIA[media_field]} if media_field else {})}
    if worker.task == "text-to-image":
        body.update(height=64, width=64)
    media_type = "application/json" if worker.task == "text-to-image" else "multipart/form-data"
    minimal = operation.Case(body=body, media_type=media_type)
    statuses.append(minimal.call_and_validate(base_url=worker.url, checks=CHECKS, timeout=30).status_code)
    # The run reached the model and was refused too: both sides of the contract were exercised.
    assert 200 in statuses and any(400 <= s < 500 for s in statuses), sorted(set(statuses))
