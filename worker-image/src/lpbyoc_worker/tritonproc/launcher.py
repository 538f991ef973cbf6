"""Run tritonserver as a child process and wait until its models are ready.

Used by the local demo and the tests; in the pod the `triton` subcommand execs the server instead,
so that Kubernetes signals reach it directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from lpbyoc_worker.tritonproc.install import (
    TritonInstall,
    locate_triton,
    prepare_runtime,
    server_environment,
)
from lpbyoc_worker.tritonproc.options import TritonOptions, server_argv


class TritonStartError(RuntimeError):
    """tritonserver exited or did not get its models ready in time; the message ends with its log."""


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(pgid: int) -> None:
    # The python-backend stubs are the server's children, in its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _shared_memory_files(pid: int) -> list[Path]:
    """The /dev/shm files the server has mapped: its python backend's regions, which a killed server leaves behind."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    # Only the backend's own regions: clients' registered regions are mapped too, and are theirs.
    prefix = "/dev/shm/triton_python_backend_shm_region_"
    paths = {line.split(maxsplit=5)[5] for line in maps.splitlines() if f" {prefix}" in line}
    return sorted(Path(p) for p in paths if p.startswith(prefix) and not p.endswith(" (deleted)"))


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


class TritonServer:
    """One tritonserver child process; `start()` may be called again after `stop()`/`kill()`."""

    def __init__(
        self,
        options: TritonOptions,
        *,
        install: TritonInstall | None = None,
        runtime_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.options = options
        self._install = install
        self._owns_runtime_dir = runtime_dir is None
        self.runtime_dir = runtime_dir or Path(tempfile.mkdtemp(prefix="lpbyoc-triton-"))
        self.log_path = log_path or self.runtime_dir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared: TritonInstall | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.options.address}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.address}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.address}:{self.options.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and block until every model in `options.models` is ready."""
        if self.running:
            return
        if self._prepared is None:
            self._prepared = prepare_runtime(self._install or locate_triton(), self.runtime_dir / "runtime")
        argv = server_argv(self._prepared, self.options)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(self._prepared),
                # Its own process group, so a test runner's Ctrl-C does not race our shutdown.
                start_new_session=True,
            )
        try:
            self.wait_until_ready(timeout)
        except TritonStartError:
            self.kill()
            raise

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        urls = [f"{self.http_url}/v2/models/{name}/ready" for name in self.options.models]
        seen_regions: set[Path] = set()
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process is not None:
                    # Noted while it runs: a server that dies during start cannot be asked afterwards.
                    seen_regions.update(_shared_memory_files(self._process.pid))
                if self._process is None or self._process.poll() is not None:
                    code = None if self._process is None else self._process.returncode
                    _remove_files(sorted(seen_regions))
                    raise TritonStartError(
                        f"tritonserver exited with code {code} before its models were ready; "
                        f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                    )
                try:
                    if all(client.get(url).status_code == 200 for url in urls):
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TritonStartError(
                        f"models {list(self.options.models)} not ready within {timeout:.0f}s; "
                        f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the server (it drains in-flight requests), SIGKILL after `timeout`."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            regions = _shared_memory_files(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10.0)
            _kill_group(process.pid)
            _remove_files(regions)
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL the server and its python-backend stubs at once, as a crash would."""
        process = self._process
        if process is None:
            return None
        regions = _shared_memory_files(process.pid)
        _kill_group(process.pid)
        process.wait(10.0)
        _remove_files(regions)
        return process.returncode

    def close(self) -> None:
        self.stop()
        if self._owns_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
