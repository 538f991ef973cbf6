"""The byte transfer over proxies and TLS, as the Hub client does it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lpbyoc_worker.weights import verify

from tests.support.hub_server import FakeHub, PatternBlob, self_signed_cert, serve_hub

from .conftest import REPO, WORKER, prefetch_args


def run_program(cache: Path, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real console program in a child process, with only the environment given."""
    args = prefetch_args(cache, REPO, "main", tmp_path / "t", "--max-retries", "0")
    return subprocess.run([*WORKER, *args], env=env, capture_output=True, text=True, timeout=60)


def test_everything_goes_through_the_proxy_from_the_environment(
    hub: FakeHub, cache: Path, tmp_path: Path
) -> None:
    """HF_ENDPOINT names a host that does not resolve; only the proxy (the Hub server, which also
    answers absolute-URI requests as a forward proxy would) can reach it."""
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(2 * 1024 * 1024), "config.json": b"{}"})
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "HF_TOKEN"}
    env.update(HF_ENDPOINT="http://hub.example.invalid", HTTP_PROXY=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
    proc = run_program(cache, tmp_path, env)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["sha"] == sha
    gets = [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) == 2
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_https_with_a_private_ca_and_a_cdn_redirect(tmp_path: Path, cache: Path) -> None:
    """The Hub over TLS (self-signed, trusted through SSL_CERT_FILE), LFS bytes from its CDN host."""
    cert, key = self_signed_cert(tmp_path)
    with serve_hub(tls=(cert, key)) as hub:
        hub.cdn_redirect = True
        sha = hub.add_repo(REPO, {"w.bin": PatternBlob(2 * 1024 * 1024), "config.json": b"{}"})
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "HF_TOKEN"}
        env.update(HF_ENDPOINT=hub.url, SSL_CERT_FILE=str(cert), HF_HUB_DISABLE_TELEMETRY="1")
        proc = run_program(cache, tmp_path, env)
        assert proc.returncode == 0, proc.stderr
        assert [r.path.split("/")[1] for r in hub.requests if r.method == "GET" and "w.bin" in r.path] == [
            "acme",
            "cdn",
        ]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["sha"] == sha
    assert verify(cache, REPO, sha, check_hash=True) == []
