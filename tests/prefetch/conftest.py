"""Fixtures for the prefetch tests: a live Hub-compatible server and ways to run the real program."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lpbyoc_worker import cli

from tests.support.hub_server import Content, FakeHub, serve_hub, tiny_model_files

REPO = "acme/tiny"
WORKER = [sys.executable, "-m", "lpbyoc_worker.cli"]


@pytest.fixture(scope="session")
def model_files() -> dict[str, bytes | Content]:
    """The tiny model repo's contents (TorchScript model, config, three 1 MiB LFS shards)."""
    return tiny_model_files()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve_hub() as server:
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@dataclass
class Outcome:
    code: int
    result: dict[str, Any]
    stdout: str
    stderr: str
    termination: str


def prefetch_args(cache: Path, repo: str, revision: str, term: Path, *extra: str) -> list[str]:
    return [
        "prefetch",
        "--repo",
        repo,
        "--revision",
        revision,
        "--cache-dir",
        str(cache),
        "--progress-port",
        "-1",
        "--termination-log",
        str(term),
        "--retry-backoff",
        "0.05",
        *extra,
    ]


@pytest.fixture
def run_prefetch(
    hub: FakeHub,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run `lpbyoc-worker prefetch` in this process (fast); returns an Outcome."""

    def run(*extra: str, repo: str = REPO, revision: str = "main", token: str | None = None) -> Outcome:
        term = tmp_path / "termination-log"
        term.unlink(missing_ok=True)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        if token is None:
            monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HF_TOKEN", token)
        capsys.readouterr()
        code = cli.main(prefetch_args(cache, repo, revision, term, *extra))
        out, err = capsys.readouterr()
        termination = term.read_text() if term.exists() else ""
        return Outcome(code, json.loads(out.strip().splitlines()[-1]), out, err, termination)

    return run


def spawn_prefetch(
    hub: FakeHub,
    cache: Path,
    term: Path,
    *extra: str,
    repo: str = REPO,
    revision: str = "main",
    token: str | None = None,
) -> subprocess.Popen[str]:
    """Start the real console program in a child process (for kill, progress and log tests)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.Popen(
        [*WORKER, *prefetch_args(cache, repo, revision, term, *extra)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a size-limited tmpfs at `path`; yields False (and mounts nothing) where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
