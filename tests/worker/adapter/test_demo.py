"""`lpbyoc-worker demo` runs the whole worker on loopback (real tritonserver) and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lpbyoc_worker.cli", "demo", "--jobs", "2", "--frames", "3", "--size", "64"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "POST /v1/infer → 200, 64x64 image/png" in out
    assert "bad input → 400" in out and "Image is neither PNG nor JPEG." in out
    assert "3 live frames of 64x64 through the frame path" in out
    assert 'lpbyoc_adapter_frames_total{outcome="processed"} 3.0' in out
    assert out.rstrip().endswith("demo done")
    assert "tritonserver stopped" in out
