"""The prefetcher records what the snapshot is: in the manifest and in the result the operator reads.

Real client, real loopback Hub, real files (configs and small safetensors written with the
`safetensors` package), real detection (`lpbyoc_worker.runtimes.detect`).
"""

from __future__ import annotations

import json
from pathlib import Path

from lpbyoc_worker.prefetch.result import SUCCEEDED, TERMINATION_LIMIT, Result
from lpbyoc_worker.weights import MARKER_NAME, Marker, read_marker, snapshot_dir

from tests.support.hub_server import FakeHub, tiny_diffusers_files, tiny_transformers_files

SD = "acme/tiny-sd"
WHISPER = "acme/tiny-whisper"
SD_INFO = {
    "library_name": "diffusers",
    "pipeline_tag": "text-to-image",
    "cardData": {"library_name": "diffusers", "pipeline_tag": "text-to-image", "license": "other"},
}


def test_diffusers_snapshot_with_variant_is_described_in_result_and_marker(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    sha = hub.add_repo(SD, tiny_diffusers_files(), info=SD_INFO)

    outcome = run_prefetch("--variant", "fp16", repo=SD)

    assert outcome.code == 0, outcome.stderr
    model = outcome.result["model"]
    assert model == {
        "format": "diffusers",
        "className": "StableDiffusionPipeline",
        "architectures": [],
        "modelType": None,
        "weightBytes": model["weightBytes"],
        "weightDtype": "F16",
        "tasks": ["text-to-image", "image-to-image"],
        "problems": [],
        "libraryName": "diffusers",
        "pipelineTag": "text-to-image",
    }
    root = snapshot_dir(cache, SD, sha)
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    weights = [p for p in on_disk if p.endswith(".safetensors")]
    assert weights == [
        "text_encoder/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert not any(p.endswith((".ckpt", ".bin")) for p in on_disk) and "README.md" not in on_disk
    assert model["weightBytes"] == sum((root / p).stat().st_size for p in weights)
    assert read_marker(cache, SD, sha).model == model
    assert json.loads(outcome.termination) == outcome.result
    assert len(outcome.termination.encode()) < TERMINATION_LIMIT


def test_without_variant_the_full_precision_weights_are_fetched(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    sha = hub.add_repo(SD, tiny_diffusers_files())
    outcome = run_prefetch(repo=SD)
    assert outcome.code == 0, outcome.stderr
    assert outcome.result["model"]["weightDtype"] == "F32"
    assert "libraryName" not in outcome.result["model"]  # the Hub said nothing about it
    root = snapshot_dir(cache, SD, sha)
    assert (root / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (root / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()


def test_transformers_snapshot_skips_duplicate_weights_and_records_its_task(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    sha = hub.add_repo(
        WHISPER, tiny_transformers_files(), info={"pipeline_tag": "automatic-speech-recognition"}
    )

    outcome = run_prefetch(repo=WHISPER)

    assert outcome.code == 0, outcome.stderr
    model = outcome.result["model"]
    assert (model["format"], model["className"], model["modelType"]) == (
        "transformers",
        "WhisperForConditionalGeneration",
        "whisper",
    )
    assert model["architectures"] == ["WhisperForConditionalGeneration"]
    assert (model["tasks"], model["problems"], model["weightDtype"]) == (["audio-to-text"], [], "F32")
    assert model["pipelineTag"] == "automatic-speech-recognition"
    root = snapshot_dir(cache, WHISPER, sha)
    for skipped in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "README.md"):
        assert not (root / skipped).exists()
    assert outcome.result["files"] == len(read_marker(cache, WHISPER, sha).files) == 9


def test_allow_patterns_replace_the_default_selection(hub: FakeHub, cache: Path, run_prefetch) -> None:
    files = tiny_transformers_files()
    sha = hub.add_repo(WHISPER, files)
    outcome = run_prefetch("--allow", "*", repo=WHISPER)
    assert outcome.code == 0 and outcome.result["files"] == len(files)
    assert (snapshot_dir(cache, WHISPER, sha) / "pytorch_model.bin").is_file()


def test_a_missing_file_is_a_recorded_problem(hub: FakeHub, cache: Path, run_prefetch) -> None:
    hub.add_repo(WHISPER, tiny_transformers_files())
    outcome = run_prefetch("--ignore", "preprocessor_config.json", repo=WHISPER)
    assert outcome.code == 0
    assert any("preprocessor_config.json" in p for p in outcome.result["model"]["problems"])


def test_a_snapshot_already_in_the_cache_is_described_without_downloading(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    sha = hub.add_repo(WHISPER, tiny_transformers_files())
    first = run_prefetch(repo=WHISPER)
    # A marker written before the prefetcher recorded the model (older image) still reads.
    marker_file = snapshot_dir(cache, WHISPER, sha) / MARKER_NAME
    old = json.loads(marker_file.read_text())
    old.pop("model")
    marker_file.write_text(json.dumps(old))
    assert read_marker(cache, WHISPER, sha).model is None

    again = run_prefetch(repo=WHISPER)

    assert again.code == 0 and again.result["bytesDownloaded"] == 0
    assert again.result["model"] == first.result["model"]


def test_torchscript_repo_keeps_every_file(hub: FakeHub, cache: Path, run_prefetch, model_files) -> None:
    hub.add_repo("acme/tiny", model_files)
    outcome = run_prefetch()
    assert outcome.code == 0 and outcome.result["files"] == len(model_files)
    assert outcome.result["model"]["format"] in ("transformers", "torchscript")


def test_result_line_stays_under_the_termination_limit() -> None:
    model = {
        "format": "diffusers",
        "className": "X" * 5000,
        "architectures": [f"Arch{i}" * 20 for i in range(50)],
        "tasks": ["text-to-image"] * 40,
        "problems": ["p" * 2000 for _ in range(20)],
        "weightBytes": 1,
    }
    result = Result(SUCCEEDED, "m" * 5000, "a" * 40, 1, 1, 0, model=model)
    line = json.dumps(result.to_json(), sort_keys=True)
    assert len(line.encode()) < TERMINATION_LIMIT
    data = json.loads(line)
    assert data["model"]["format"] == "diffusers" and data["model"]["problems"]
    assert len(data["model"]["architectures"]) <= 8


def test_marker_round_trips_the_model_and_compares_by_files() -> None:
    marker = Marker("a/b", "main", "a" * 40, (), "2026-01-01T00:00:00Z", model={"format": "diffusers"})
    assert Marker.from_json(marker.to_json()).model == {"format": "diffusers"}
    assert "model" not in Marker("a/b", "main", "a" * 40, (), "t").to_json()
