"""`serve --task` against a Triton model for another task exits non-zero with a clear message."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.support.triton import RunningTriton

from .test_lifecycle import free_port


@pytest.mark.slow
async def test_serve_with_a_task_the_model_cannot_serve_exits_3(triton_server: RunningTriton) -> None:
    """The test Triton serves a TorchScript filter: it has no `task` parameter, so --task must refuse."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lpbyoc_worker.cli", "serve",
        "--host", "127.0.0.1", "--port", str(free_port()),
        "--triton-grpc", triton_server.grpc_url, "--model-name", triton_server.model_name,
        "--model-id", "m", "--task", "image-to-text", "--ready-poll-seconds", "0.1",
        env={**os.environ, "AUTH_TOKEN": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 3, output.decode()
    assert "has no 'task' parameter" in output.decode()
    assert "--task image-to-text" in output.decode()
