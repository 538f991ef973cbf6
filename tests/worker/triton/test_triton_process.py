"""`lpbyoc-worker triton`: finding tritonserver, preparing its runtime tree, the command line, and the exec.

The exec test runs the real subcommand on the session fixture's model repository (other ports).
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
from lpbyoc_worker.cli import main as worker_main
from lpbyoc_worker.tritonproc import (
    TritonInstall,
    TritonNotFound,
    TritonOptions,
    TritonServer,
    TritonStartError,
    locate_triton,
    prepare_runtime,
    server_argv,
)
from lpbyoc_worker.tritonproc.install import STUB_NAME, server_environment
from lpbyoc_worker.tritonproc.launcher import _shared_memory_files

from tests.support.triton import RunningTriton, free_ports


def test_default_command_line_follows_the_pod_contract() -> None:
    install = TritonInstall(root=Path("/opt/tritonserver"))
    argv = server_argv(install, TritonOptions(model_repository=Path("/models")))
    assert argv[0] == "/opt/tritonserver/bin/tritonserver"
    flags = set(argv[1:])
    assert {
        "--model-repository=/models",
        "--backend-directory=/opt/tritonserver/backends",
        "--model-control-mode=explicit",
        "--load-model=model",
        "--http-address=127.0.0.1",
        "--http-port=8010",
        "--grpc-address=127.0.0.1",
        "--grpc-port=8011",
        "--metrics-address=127.0.0.1",
        "--metrics-port=8012",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
    } <= flags


def test_gpu_servers_keep_gpu_metrics_and_pinned_memory() -> None:
    argv = server_argv(TritonInstall(root=Path("/t")), TritonOptions(model_repository=Path("/m"), gpu=True))
    assert "--allow-gpu-metrics=true" in argv
    assert not any(a.startswith("--pinned-memory-pool-byte-size") for a in argv)


def test_explicit_binary_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TritonNotFound, match="does not exist"):
        locate_triton(tmp_path / "tritonserver")


def test_tritonserver_on_path_is_used_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "opt" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    install = locate_triton()
    assert install.root == tmp_path / "opt" and not install.needs_runtime_copy
    assert prepare_runtime(install, tmp_path / "unused") is install
    assert not (tmp_path / "unused").exists()


def test_wheel_install_is_copied_with_the_stub_for_this_python(tmp_path: Path) -> None:
    wheel = locate_triton()  # no tritonserver on PATH or in /opt here: the nvidia-pytriton wheel
    assert wheel.needs_runtime_copy and wheel.libs_dir is not None and wheel.libs_dir.is_dir()
    runtime = prepare_runtime(wheel, tmp_path / "rt")
    stub = runtime.backends_dir / "python" / STUB_NAME
    assert stub.is_file() and stub.stat().st_mode & stat.S_IXUSR
    assert runtime.binary.is_file() and (runtime.backends_dir / "python" / "libtriton_python.so").is_file()
    assert not (wheel.backends_dir / "python" / STUB_NAME).exists(), "the venv's wheel tree stays untouched"
    # Preparing twice (a restarted container) works over the existing tree.
    assert prepare_runtime(wheel, tmp_path / "rt").binary == runtime.binary


def test_environment_puts_this_python_first_and_its_libdir_on_the_library_path(tmp_path: Path) -> None:
    install = TritonInstall(root=tmp_path, libs_dir=tmp_path / "libs")
    env = server_environment(install, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    libs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libs[0] == str(tmp_path / "libs")
    assert str(sysconfig.get_config_var("LIBDIR")) in libs and libs[-1] == "/x"
    image = server_environment(
        TritonInstall(root=Path("/opt/tritonserver")), {"LD_LIBRARY_PATH": "/usr/local/cuda/compat/lib"}
    )
    assert image["LD_LIBRARY_PATH"] == "/usr/local/cuda/compat/lib", "the image's library path is left alone"


def test_print_command_and_missing_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = worker_main(
        [
            "triton",
            "--model-repository",
            str(tmp_path),
            "--http-port",
            "9100",
            "--runtime-dir",
            str(tmp_path / "rt"),
            "--gpu",
            "no",
            "--print-command",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "--http-port=9100" in out and f"--model-repository={tmp_path}" in out
    assert not (tmp_path / "rt").exists(), "printing the command copies nothing"
    assert worker_main(["triton", "--model-repository", str(tmp_path / "missing")]) == 2
    assert "model repository" in capsys.readouterr().err
    assert (
        worker_main(["triton", "--model-repository", str(tmp_path), "--tritonserver", "/nonexistent/ts"]) == 2
    )
    assert "tritonserver binary /nonexistent/ts does not exist" in capsys.readouterr().err


def test_triton_subcommand_execs_the_server_which_drains_on_sigterm(
    triton_server: RunningTriton, tmp_path: Path
) -> None:
    http, grpc, metrics = free_ports(3)
    backend_regions: list[Path] = []
    log = (tmp_path / "triton.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lpbyoc_worker.cli",
            "triton",
            "--model-repository",
            str(triton_server.model_repository),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--runtime-dir",
            str(tmp_path / "rt"),
            "--gpu",
            "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = (
                    httpx.get(f"http://127.0.0.1:{http}/v2/models/model/ready", timeout=1).status_code == 200
                )
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready, (tmp_path / "triton.log").read_text()[-3000:]
        # exec: the PID we started is tritonserver itself, so Kubernetes' SIGTERM reaches it directly.
        assert Path(f"/proc/{process.pid}/exe").resolve().name == "tritonserver"
        assert "nv_inference_request_success" in httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        backend_regions = _shared_memory_files(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        for path in backend_regions:  # what the pod's own /dev/shm emptyDir would take with it
            path.unlink(missing_ok=True)


def test_a_model_that_fails_to_load_stops_the_start_with_triton_log(tmp_path: Path) -> None:
    model = tmp_path / "models" / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X", data_type: TYPE_FP32, dims: [1] }]\n'
        'output [{ name: "Y", data_type: TYPE_FP32, dims: [1] }]\n'
        "instance_group [{ kind: KIND_CPU, count: 1 }]\n"
    )
    (model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('weights are corrupt')\n"
    )
    http, grpc, metrics = free_ports(3)
    options = TritonOptions(
        model_repository=tmp_path / "models",
        models=("broken",),
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
    )
    server = TritonServer(options, runtime_dir=tmp_path / "rt")
    started = time.monotonic()
    with pytest.raises(TritonStartError, match="weights are corrupt") as caught:
        server.start(timeout=60)
    assert time.monotonic() - started < 30, "the exit is noticed, not waited out"
    assert "exited with code" in str(caught.value)
    assert not server.running


def test_a_port_already_in_use_fails_the_start_with_the_reason(
    triton_server: RunningTriton, tmp_path: Path
) -> None:
    """What the test fixture retries on (another process took a probed free port)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _, grpc, metrics = free_ports(3)
        options = TritonOptions(
            model_repository=triton_server.model_repository,
            http_port=taken.getsockname()[1],
            grpc_port=grpc,
            metrics_port=metrics,
        )
        with pytest.raises(TritonStartError, match="already in use"):
            TritonServer(options, runtime_dir=tmp_path / "rt").start(timeout=60)
