"""Against a real tritonserver (nvidia-pytriton wheel) serving the generated repository.

Nothing is mocked: the session fixture builds a TorchScript conv net, runs `model-repo` and starts
tritonserver. The kill/restart test runs last in this module and leaves the server running.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from lpbyoc_worker import inference
from lpbyoc_worker.inference import (
    InferenceFailed,
    InvalidInput,
    TritonInference,
    TritonUnavailable,
)
from lpbyoc_worker.tritonproc.launcher import _shared_memory_files

from tests.support.triton import DEFAULT_SERVING, RunningTriton, free_ports, run_model_repo, write_snapshot


def reference(triton: RunningTriton, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return triton.module()(torch.from_numpy(batch)).numpy()


def frames(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, height, width), dtype=np.float32)


@pytest.fixture
def admin(triton_server: RunningTriton) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    yield client
    client.close()


def test_server_serves_the_generated_config(admin: grpcclient.InferenceServerClient) -> None:
    config = admin.get_model_config("model", as_json=True)["config"]
    assert config["backend"] == "python"
    assert config["max_batch_size"] == DEFAULT_SERVING["maxBatchSize"]
    assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]] == [
        ("INPUT__0", "TYPE_FP32", [3, -1, -1])
    ]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "100"
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 1)]


@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 64, 64), (1, 256, 256), (1, 512, 512), (4, 37, 53)]
)
@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "plain"])
async def test_inference_matches_the_torchscript_module(
    triton_server: RunningTriton, batch: int, height: int, width: int, shared_memory: bool
) -> None:
    x = frames(batch, height, width, seed=height)
    async with TritonInference(
        triton_server.grpc_url, triton_server.model_name, shared_memory=shared_memory
    ) as client:
        y = await client.infer(x)
        assert client.transport == ("grpc+shm" if shared_memory else "grpc")
    assert y.shape == (batch, 3, height, width)
    np.testing.assert_allclose(y, reference(triton_server, x), rtol=1e-5, atol=1e-6)


async def test_http_transport_gives_the_same_result(triton_server: RunningTriton) -> None:
    x = frames(2, 32, 48)
    async with TritonInference(triton_server.http_url, protocol="http") as client:
        y = await client.infer(x)
    np.testing.assert_allclose(y, reference(triton_server, x), rtol=1e-5, atol=1e-6)


async def test_concurrent_requests_of_mixed_sizes_are_batched_correctly(triton_server: RunningTriton) -> None:
    # Dynamic batching hands the python backend several requests at once; same-shaped ones run as one batch.
    inputs = [frames(1 + i % 2, 24 + 8 * (i % 3), 32, seed=i) for i in range(12)]
    async with TritonInference(triton_server.grpc_url) as client:
        outputs = await asyncio.gather(*(client.infer(x) for x in inputs))
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, reference(triton_server, x), rtol=1e-5, atol=1e-6)


def registered(admin: grpcclient.InferenceServerClient) -> set[str]:
    return set(admin.get_system_shared_memory_status(as_json=True).get("regions", {}))


async def test_shared_memory_regions_are_registered_reused_and_released(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    x = frames(1, 64, 64)
    async with TritonInference(triton_server.grpc_url) as client:
        for _ in range(3):
            np.testing.assert_allclose(
                await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6
            )
        ours = set(client.shared_memory_regions)
        assert len(ours) == 2, "one input and one output region, reused by sequential requests"
        assert ours <= registered(admin)
    assert not ours & registered(admin), "close() unregisters"


async def test_forgotten_registrations_fall_back_then_register_again(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    """What a Triton restart between two requests looks like to the client."""
    x = frames(1, 48, 48)
    async with TritonInference(triton_server.grpc_url) as client:
        await client.infer(x)
        for name in client.shared_memory_regions:
            admin.unregister_system_shared_memory(name)
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        assert client.transport == "grpc+shm"
        assert set(client.shared_memory_regions) <= registered(admin)


async def test_a_request_that_times_out_never_shares_its_regions_again(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    """Triton may still write a timed-out request's output: that slot must not serve the next request."""
    x = frames(1, 512, 512)
    async with TritonInference(triton_server.grpc_url) as client:
        await client.infer(x)
        first = set(client.shared_memory_regions)
        client.timeout_s = 0.0005
        with pytest.raises(TritonUnavailable):
            await client.infer(x)
        client.timeout_s = 30
        assert not first & set(client.shared_memory_regions), "the timed-out slot was retired"
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        assert client.transport == "grpc+shm"
        # Triton refuses to unregister while the late request still runs; later requests try again.
        for _ in range(50):
            if not first & registered(admin):
                break
            await client.infer(x)
        assert not first & registered(admin), "retired regions end up unregistered"


async def test_output_larger_than_its_region_is_answered_and_the_region_grows(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "OUTPUT_REGION_FACTOR", 0)  # output regions get the 1 MiB minimum
    x = frames(1, 512, 512)  # 3 MiB out
    async with TritonInference(triton_server.grpc_url) as client:
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        assert client.transport == "grpc+shm"
        sizes = admin.get_system_shared_memory_status(as_json=True)["regions"]
        outputs = [int(sizes[n]["byte_size"]) for n in client.shared_memory_regions if n.endswith("-out")]
        assert outputs and all(size >= x.nbytes for size in outputs)


async def test_triton_that_cannot_open_our_shared_memory_gets_plain_grpc(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when /dev/shm is not shared between the adapter's and Triton's containers."""
    monkeypatch.setattr(inference._Region, "key", property(lambda region: f"/{region.name}-elsewhere"))
    x = frames(2, 32, 32)
    async with TritonInference(triton_server.grpc_url) as client:
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        assert client.transport == "grpc"
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
        assert not set(client.shared_memory_regions) & registered(admin)


def execution_counts(admin: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = admin.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


async def test_dynamic_batching_runs_same_shaped_requests_together(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    # A long queue delay makes Triton hand the backend all the requests at once, even on a loaded box
    # (the six requests fill the batch of 8, so the delay is not waited out when they arrive together).
    serving = {
        **DEFAULT_SERVING,
        "dynamicBatching": {"enabled": True, "maxQueueDelayMicroseconds": 3_000_000},
    }
    result = run_model_repo(
        triton_server.weights_dir, triton_server.model_repository, serving=serving, model_name="batcher"
    )
    assert result.returncode == 0, result.stderr
    admin.load_model("batcher")
    try:
        # Triton's batcher joins queued requests of the same shape (it stops at the first that differs).
        inputs = [frames(size, 16, 20, seed=i) for i, size in enumerate([1, 2, 1, 2, 1, 1])]
        # Plain gRPC and a warm client, so the six requests reach Triton together (no per-request setup).
        async with TritonInference(triton_server.grpc_url, "batcher", shared_memory=False) as client:
            await client.infer(inputs[0])
            inferences_before, executions_before = execution_counts(admin, "batcher")
            outputs = await asyncio.gather(*(client.infer(x) for x in inputs))
        for x, y in zip(inputs, outputs, strict=True):
            np.testing.assert_allclose(y, reference(triton_server, x), rtol=1e-5, atol=1e-6)
        inferences, executions = execution_counts(admin, "batcher")
        assert inferences - inferences_before == sum(x.shape[0] for x in inputs)
        assert executions - executions_before < len(inputs), (
            "requests were batched, and split back per request"
        )
    finally:
        admin.unload_model("batcher")


async def test_uint8_input_is_widened_and_lossy_conversions_refused(triton_server: RunningTriton) -> None:
    pixels = np.random.default_rng(3).integers(0, 255, (1, 3, 16, 16), dtype=np.uint8)
    async with TritonInference(triton_server.grpc_url) as client:
        y = await client.infer(pixels)
        np.testing.assert_allclose(
            y, reference(triton_server, pixels.astype(np.float32)), rtol=1e-5, atol=1e-6
        )
        with pytest.raises(InvalidInput, match="cannot convert complex64"):
            await client.infer(pixels.astype(np.complex64))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 16, 16), r"needs 4 dimensions \[batch, 3, -1, -1\]"),
        ((1, 4, 16, 16), "dimension 0 must be 3, got 4"),
        ((9, 3, 8, 8), r"batch size 9 is outside 1\.\.8"),
        ((1, 3, 0, 8), "dimension 1 is empty"),
    ],
)
async def test_inputs_that_do_not_fit_the_config_are_refused_before_sending(
    triton_server: RunningTriton, shape: tuple[int, ...], message: str
) -> None:
    async with TritonInference(triton_server.grpc_url) as client:
        with pytest.raises(InvalidInput, match=message):
            await client.infer(np.zeros(shape, dtype=np.float32))


async def test_unknown_model_is_unavailable(triton_server: RunningTriton) -> None:
    async with TritonInference(triton_server.grpc_url, "no_such_model") as client:
        assert await client.is_model_ready() is False
        with pytest.raises(TritonUnavailable):
            await client.infer(frames(1, 8, 8))


async def test_nothing_listening_is_unavailable() -> None:
    (port,) = free_ports(1)
    async with TritonInference(f"127.0.0.1:{port}", timeout_s=5) as client:
        assert await client.is_model_ready() is False
        with pytest.raises(TritonUnavailable, match=r"unavailable|unreachable"):
            await client.infer(frames(1, 8, 8))


async def test_readiness_flips_only_when_the_model_is_loaded(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    # A second model in the same repository, with open channel dims so a wrong channel count reaches torch.
    serving = {
        **DEFAULT_SERVING,
        "inputs": [{"name": "INPUT__0", "dataType": "TYPE_FP32", "dims": [-1, -1, -1]}],
    }
    result = run_model_repo(
        triton_server.weights_dir, triton_server.model_repository, serving=serving, model_name="late"
    )
    assert result.returncode == 0, result.stderr
    async with TritonInference(triton_server.grpc_url, "late") as client:
        assert await client.is_model_ready() is False
        admin.load_model("late")
        try:
            assert await client.is_model_ready() is True
            x = frames(1, 16, 16)
            np.testing.assert_allclose(
                await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6
            )
            # Triton's own error comes back as InferenceFailed with the backend's message.
            with pytest.raises(InferenceFailed, match="RuntimeError"):
                await client.infer(np.zeros((1, 4, 16, 16), dtype=np.float32))
        finally:
            admin.unload_model("late")
        for _ in range(50):
            if not await client.is_model_ready():
                break
            await asyncio.sleep(0.1)
        assert await client.is_model_ready() is False
        with pytest.raises(TritonUnavailable):
            await client.infer(frames(1, 8, 8))


async def test_snapshot_that_is_a_triton_model_is_served_as_is(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient, tmp_path: Path
) -> None:
    # An upstream repo holding a Triton model directory: here, the one model-repo generated for the fixture.
    generated = triton_server.model_repository / triton_server.model_name
    files: dict[str, bytes | Path] = {
        "tiny/config.pbtxt": (generated / "config.pbtxt")
        .read_text()
        .replace('name: "model"', 'name: "tiny"')
        .encode(),
        "tiny/1/model.py": generated / "1" / "model.py",
        "tiny/1/model.pt": triton_server.torchscript_path,
    }
    snapshot = write_snapshot(tmp_path / "cache", files, repo="upstream/triton-tiny")
    result = run_model_repo(snapshot, triton_server.model_repository, serving={}, model_name="asis")
    assert result.returncode == 0, result.stderr
    assert "tritonRepository" in result.stderr
    admin.load_model("asis")
    try:
        x = frames(1, 20, 20)
        async with TritonInference(triton_server.grpc_url, "asis") as client:
            np.testing.assert_allclose(
                await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6
            )
    finally:
        admin.unload_model("asis")


NUMPY_PROBE = textwrap.dedent(
    """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            version = np.array([np.__version__.encode()], dtype=np.object_)
            return [pb_utils.InferenceResponse([pb_utils.Tensor("NUMPY_VERSION", version)]) for _ in requests]
    """
)


def test_numpy_is_older_than_2_in_the_client_and_in_the_python_backend(
    triton_server: RunningTriton, admin: grpcclient.InferenceServerClient
) -> None:
    """With numpy 2 the python backend answers with empty outputs and no error: guard both sides."""
    assert int(np.__version__.split(".")[0]) < 2, f"client venv has numpy {np.__version__}"
    probe = triton_server.model_repository / "numpy_probe"
    (probe / "1").mkdir(parents=True, exist_ok=True)
    (probe / "1" / "model.py").write_text(NUMPY_PROBE)
    (probe / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "DUMMY", data_type: TYPE_INT32, dims: [1] }]\n'
        'output [{ name: "NUMPY_VERSION", data_type: TYPE_STRING, dims: [1] }]\n'
        "instance_group [{ kind: KIND_CPU, count: 1 }]\n"
    )
    admin.load_model("numpy_probe")
    try:
        dummy = grpcclient.InferInput("DUMMY", [1], "INT32")
        dummy.set_data_from_numpy(np.zeros(1, dtype=np.int32))
        version = admin.infer("numpy_probe", [dummy]).as_numpy("NUMPY_VERSION")
    finally:
        admin.unload_model("numpy_probe")
    assert version is not None and version.shape == (1,), f"empty backend output: {version!r}"
    backend_numpy = version[0].decode()
    assert int(backend_numpy.split(".")[0]) < 2, f"python backend runs numpy {backend_numpy}"

    # And the real model's outputs are non-empty and shaped like its input.
    x = frames(2, 8, 8)
    model_input = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
    model_input.set_data_from_numpy(x)
    y = admin.infer("model", [model_input]).as_numpy("OUTPUT__0")
    assert y is not None and y.shape == x.shape and y.size > 0


async def test_triton_killed_then_restarted(triton_server: RunningTriton) -> None:
    x = frames(1, 32, 32)
    async with TritonInference(triton_server.grpc_url, timeout_s=5) as client:
        assert await client.is_model_ready() is True
        backend_regions = _shared_memory_files(triton_server.server.pid or 0)
        assert backend_regions, "the python backend talks to its stub through /dev/shm"
        triton_server.kill()
        assert not any(path.exists() for path in backend_regions), "a killed server's regions are cleaned up"
        try:
            assert await client.is_model_ready() is False
            with pytest.raises(TritonUnavailable):
                await client.infer(x)
        finally:
            triton_server.start()
        # The same client (one per adapter process) recovers without being recreated, promptly.
        for _ in range(20):
            if await client.is_model_ready():
                break
            await asyncio.sleep(0.1)
        assert await client.is_model_ready() is True
        np.testing.assert_allclose(await client.infer(x), reference(triton_server, x), rtol=1e-5, atol=1e-6)
