"""`lpbyoc-worker demo` runs the whole worker on loopback (real tritonserver, HF models) and exits 0."""

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
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "diffusers StableDiffusionPipeline → Triton model 'img2img' (image-to-image)" in out
    assert "transformers DepthAnythingForDepthEstimation → Triton model 'depth' (depth-estimation)" in out
    assert "POST /image-to-image #2 → 200, 64x64 PNG data URL, seed 42" in out
    assert "same seed, same image: True" in out
    assert "no prompt → 422" in out and "'loc': ['body', 'prompt']" in out
    assert "depth map 64x64 uint16 PNG" in out
    assert "bad input → 400" in out
    assert "3 live frames of 64x64 through the depth model" in out
    assert out.rstrip().endswith("demo done")
    assert "tritonserver stopped" in out
