"""`lpbyoc-worker model-repo`: the generated repository, and every way its input can be wrong.

No server here: config.pbtxt is parsed back with tritonclient's ModelConfig protobuf. Serving the
generated repository on a real tritonserver is covered in test_triton_server.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from lpbyoc_worker.cli import main as worker_main
from lpbyoc_worker.weights import MARKER_NAME
from tritonclient.grpc import model_config_pb2 as mc

from tests.support.triton import DEFAULT_SERVING, build_torchscript, run_model_repo, write_snapshot


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "model.pt"
    build_torchscript(path)
    return path


def model_repo(
    capsys: pytest.CaptureFixture[str],
    weights: Path,
    output: Path,
    *extra: str,
    serving: object = None,
    kind: str = "KIND_CPU",
) -> tuple[int, str]:
    serving_json = (
        serving if isinstance(serving, str) else json.dumps(DEFAULT_SERVING if serving is None else serving)
    )
    code = worker_main(
        [
            "model-repo",
            "--weights-dir",
            str(weights),
            "--output",
            str(output),
            "--serving-json",
            serving_json,
            "--kind",
            kind,
            *extra,
        ]
    )
    return code, capsys.readouterr().err


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_generated_config_matches_serving_json(tmp_path: Path, torchscript_file: Path) -> None:
    weights = write_snapshot(tmp_path / "cache", {"model.pt": torchscript_file})
    serving = {
        "modelFormat": "torchscript",
        "maxBatchSize": 4,
        "instanceCount": 3,
        "dynamicBatching": {"enabled": True, "maxQueueDelayMicroseconds": 250},
        "inputs": [
            {"name": "image", "dataType": "TYPE_UINT8", "dims": [3, 512, -1]},
            {"name": "strength", "dataType": "TYPE_FP32", "dims": [1]},
        ],
        "outputs": [{"name": "styled", "dataType": "TYPE_FP16", "dims": [3, -1, -1]}],
    }
    result = run_model_repo(
        weights, tmp_path / "models", serving=serving, kind="KIND_GPU", model_name="restyle"
    )
    assert result.returncode == 0, result.stderr

    model_dir = tmp_path / "models" / "restyle"
    config = read_config(model_dir / "config.pbtxt")
    assert config.name == "restyle"
    assert config.backend == "python"
    assert config.max_batch_size == 4
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        ("image", "TYPE_UINT8", [3, 512, -1]),
        ("strength", "TYPE_FP32", [1]),
    ]
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.output] == [
        ("styled", "TYPE_FP16", [3, -1, -1])
    ]
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [
        (3, "KIND_GPU")
    ]
    # The weights are linked from the cache volume, not copied into the emptyDir.
    linked = model_dir / "1" / "model.pt"
    assert linked.is_symlink() and linked.resolve() == (weights / "model.pt").resolve()
    assert "class TritonPythonModel" in (model_dir / "1" / "model.py").read_text()


def test_zero_delay_and_disabled_batching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    weights = write_snapshot(tmp_path / "cache", {"model.pt": torchscript_file})
    code, err = model_repo(
        capsys,
        weights,
        tmp_path / "a",
        serving={"dynamicBatching": {"enabled": True, "maxQueueDelayMicroseconds": 0}},
    )
    assert code == 0, err
    config = read_config(tmp_path / "a" / "model" / "config.pbtxt")
    assert config.HasField("dynamic_batching"), "a zero delay still enables dynamic batching"
    assert config.max_batch_size == 8  # the spec's default

    code, err = model_repo(
        capsys, weights, tmp_path / "b", serving={"maxBatchSize": 0, "dynamicBatching": {"enabled": False}}
    )
    assert code == 0, err
    config = read_config(tmp_path / "b" / "model" / "config.pbtxt")
    assert not config.HasField("dynamic_batching")
    assert config.max_batch_size == 0


def test_missing_marker_exits_2_with_a_clear_message(tmp_path: Path, torchscript_file: Path) -> None:
    weights = tmp_path / "snapshot"
    weights.mkdir()
    (weights / "model.pt").write_bytes(torchscript_file.read_bytes())
    result = run_model_repo(weights, tmp_path / "models")
    assert result.returncode == 2
    assert MARKER_NAME in result.stderr and "prefetch" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models" / "model").exists()


def test_skip_marker_check_serves_an_unmarked_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    weights = tmp_path / "snapshot"
    weights.mkdir()
    (weights / "model.pt").write_bytes(torchscript_file.read_bytes())
    code, err = model_repo(capsys, weights, tmp_path / "models", "--skip-marker-check")
    assert code == 0, err
    assert (tmp_path / "models" / "model" / "config.pbtxt").is_file()


def test_marker_that_does_not_match_the_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    weights = write_snapshot(tmp_path / "cache", {"model.pt": torchscript_file, "extra.bin": b"12345"})
    (weights / "extra.bin").write_bytes(b"12")  # truncated after the marker was written
    code, err = model_repo(capsys, weights, tmp_path / "models")
    assert code == 2
    assert "extra.bin: size 2 != 5" in err

    marker = json.loads((weights / MARKER_NAME).read_text())
    (weights / MARKER_NAME).write_text(json.dumps({**marker, "sha": "f" * 40}))
    code, err = model_repo(capsys, weights, tmp_path / "models")
    assert code == 2
    assert f"is for commit {'f' * 40}, not {weights.name}" in err

    (weights / MARKER_NAME).write_text("{not json")
    code, err = model_repo(capsys, weights, tmp_path / "models")
    assert code == 2
    assert "invalid" in err and MARKER_NAME in err


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        ("{not json", "invalid --serving-json"),
        ({"maxBatchSize": -1}, "maxBatchSize"),
        ({"instanceCount": 0}, "instanceCount"),
        ({"inputs": [{"name": "x", "dataType": "TYPE_STRING", "dims": [3]}]}, "inputs.0.dataType"),
        ({"inputs": [{"name": "x", "dims": []}]}, "inputs.0.dims"),
        ({"inputs": [{"name": "bad name", "dims": [3]}]}, "inputs.0.name"),
        ({"outputs": [{"name": "INPUT__0", "dims": [3]}]}, "unique"),
        ({"maxBatchSize": 0}, "dynamicBatching.enabled needs maxBatchSize > 0"),
        ({"modelFormat": "onnx"}, "modelFormat"),
        ({"maxBatchSizes": 4}, "maxBatchSizes"),
    ],
)
def test_invalid_serving_json_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path, serving: object, expected: str
) -> None:
    weights = write_snapshot(tmp_path / "cache", {"model.pt": torchscript_file})
    code, err = model_repo(capsys, weights, tmp_path / "models", serving=serving)
    assert code == 2
    assert expected in err
    assert err.startswith("model-repo: error:") and "Traceback" not in err


def test_state_dict_is_not_mistaken_for_torchscript(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "weights.pt"
    torch.save(torch.nn.Conv2d(3, 3, 3).state_dict(), state)
    weights = write_snapshot(tmp_path / "cache", {"weights.pt": state})
    code, err = model_repo(capsys, weights, tmp_path / "models")
    assert code == 2
    assert "weights.pt is not TorchScript" in err and "torch.jit" in err


def test_torchscript_file_lookup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    nothing = write_snapshot(tmp_path / "c1", {"README.md": b"no weights"})
    code, err = model_repo(capsys, nothing, tmp_path / "m1")
    assert code == 2 and "no TorchScript file" in err

    two = write_snapshot(tmp_path / "c2", {"a.pt": torchscript_file, "sub/b.pts": torchscript_file})
    code, err = model_repo(capsys, two, tmp_path / "m2")
    assert code == 2 and "several TorchScript candidates" in err and "sub/b.pts" in err

    single = write_snapshot(tmp_path / "c3", {"sub/net.pts": torchscript_file})
    code, err = model_repo(capsys, single, tmp_path / "m3")
    assert code == 0, err
    assert (tmp_path / "m3" / "model" / "1" / "model.pt").resolve() == (single / "sub" / "net.pts").resolve()

    preferred = write_snapshot(tmp_path / "c4", {"model.pt": torchscript_file, "other.pt": torchscript_file})
    code, err = model_repo(capsys, preferred, tmp_path / "m4")
    assert code == 0, err


def test_rerun_replaces_the_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    weights = write_snapshot(tmp_path / "cache", {"model.pt": torchscript_file})
    assert model_repo(capsys, weights, tmp_path / "models", serving={"maxBatchSize": 2})[0] == 0
    (tmp_path / "models" / "model" / "stale.txt").write_text("left from a crashed run")
    assert model_repo(capsys, weights, tmp_path / "models", serving={"maxBatchSize": 5})[0] == 0
    assert read_config(tmp_path / "models" / "model" / "config.pbtxt").max_batch_size == 5
    assert not (tmp_path / "models" / "model" / "stale.txt").exists()


def test_triton_repository_snapshot_is_served_as_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = 'name: "upstream_name"\nbackend: "python"\nmax_batch_size: 2\n'
    weights = write_snapshot(
        tmp_path / "cache",
        {"upstream_name/config.pbtxt": config.encode(), "upstream_name/1/model.py": b"# upstream code\n"},
    )
    code, err = model_repo(capsys, weights, tmp_path / "models", serving={"modelFormat": "auto"})
    assert code == 0, err
    served = tmp_path / "models" / "model"
    parsed = read_config(served / "config.pbtxt")
    assert parsed.name == "model", "renamed: Triton requires the name to match the directory"
    assert parsed.max_batch_size == 2 and parsed.backend == "python"
    assert (served / "1").is_symlink()
    assert (served / "1" / "model.py").read_text() == "# upstream code\n"


def test_triton_repository_format_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], torchscript_file: Path
) -> None:
    plain = write_snapshot(tmp_path / "c1", {"model.pt": torchscript_file})
    code, err = model_repo(capsys, plain, tmp_path / "m1", serving={"modelFormat": "tritonRepository"})
    assert code == 2 and "has no config.pbtxt" in err

    broken = write_snapshot(tmp_path / "c2", {"config.pbtxt": b"max_batch_size: [oops"})
    code, err = model_repo(capsys, broken, tmp_path / "m2")
    assert code == 2 and "not a valid Triton model config" in err

    several = write_snapshot(tmp_path / "c3", {"a/config.pbtxt": b"", "b/config.pbtxt": b""})
    code, err = model_repo(capsys, several, tmp_path / "m3")
    assert code == 2 and "several Triton models" in err

    # modelFormat torchscript ignores a config.pbtxt next to the weights.
    both = write_snapshot(
        tmp_path / "c4", {"config.pbtxt": b"max_batch_size: [oops", "model.pt": torchscript_file}
    )
    code, err = model_repo(capsys, both, tmp_path / "m4", serving={"modelFormat": "torchscript"})
    assert code == 0, err
