"""The prefetcher needs nothing writable but the cache volume (read-only root filesystem in the pod)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from lpbyoc_worker.weights import find_snapshot

from tests.support.hub_server import FakeHub, PatternBlob

from .conftest import REPO, tmpfs


def test_runs_with_a_read_only_root_filesystem(hub: FakeHub, tmp_path: Path) -> None:
    """In a private mount namespace `/` is remounted read-only; only the cache (a tmpfs) is writable.

    `/dev/termination-log` does not exist there, so this also covers skipping it.
    """
    sha = hub.add_repo(REPO, {"config.json": b"{}", "w.bin": PatternBlob(2 * 1024 * 1024)})
    cache = tmp_path / "cache"
    with tmpfs(cache, "16m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        program = shlex.join(
            [
                sys.executable,
                "-m",
                "lpbyoc_worker.cli",
                "prefetch",
                "--repo",
                REPO,
                "--cache-dir",
                str(cache),
                "--progress-port",
                "0",
            ]
        )
        env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount -o remount,bind,ro / && touch /probe 2>/dev/null; {program}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
            pytest.skip("cannot create a mount namespace here")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["sha"] == sha
        assert find_snapshot(cache, REPO, sha, check_hash=True)
    assert not Path("/probe").exists()
