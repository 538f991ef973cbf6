"""`lpbyoc run` and `lpbyoc demo` as a person runs them: separate processes, real ports.

Mocked: the cluster (kmock, in this process) and, for `run`, the kubelet (nothing runs the
prefetch Job here, so the capability stays Downloading).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from lpbyoc import naming
from lpbyoc.spec import parse_spec

from tests.operator.integration.conftest import byoc_spec
from tests.support.kube import Cluster, wait_for

LPBYOC = [sys.executable, "-m", "lpbyoc.cli"]
REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("with_orch_secret")
async def test_run_serves_metrics_and_liveness_and_reconciles(cluster: Cluster, orch) -> None:
    metrics_port, health_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *LPBYOC,
        "run",
        "--server",
        cluster.url,
        "--api-double",
        "--namespace",
        "default",
        "--metrics-port",
        str(metrics_port),
        "--health-port",
        str(health_port),
        "--resync-interval",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        spec = byoc_spec(orch.url)
        await wait_for(lambda: _watching(cluster), within=20, what="the operator's watches")
        await cluster.create_capability("restyle", spec)
        claim = naming.cache_claim_name(parse_spec(spec))
        await wait_for(
            lambda: cluster.get("v1", "PersistentVolumeClaim", claim), within=10, what="the cache PVC"
        )
        await cluster.wait_phase("restyle", "Downloading")

        async with httpx.AsyncClient() as client:

            async def scraped() -> str | None:
                text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                return text if 'lpbyoc_capabilities{phase="Downloading"} 1.0' in text else None

            text = await wait_for(scraped, within=10, what="the phase gauge")
            assert 'lpbyoc_reconciles_total{outcome="ok"}' in text
            assert 'lpbyoc_api_writes_total{kind="PersistentVolumeClaim",verb="create"} 1.0' in text
            assert "lpbyoc_reconcile_duration_seconds_count" in text
            health = await client.get(f"http://127.0.0.1:{health_port}/healthz")
            assert health.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, output.decode()[-2000:]


async def _watching(cluster: Cluster) -> bool:
    import kmock

    return len(cluster.api[kmock.action.WATCH]) >= 6


async def test_demo_reaches_ready_by_itself() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        *LPBYOC,
        "demo",
        "--timeout",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    text = output.decode()
    assert process.returncode == 0, text[-3000:]
    for line in (
        "operator created PersistentVolumeClaim/",
        "operator created Job/",
        "operator created Deployment/",
        "phase Downloading",
        "phase Deploying",
        "phase Ready",
        "registered with the orchestrator as ['image-restyle']",
    ):
        assert line in text, f"{line!r} missing from:\n{text}"


async def test_run_without_a_cluster_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing")}
    process = await asyncio.create_subprocess_exec(
        *LPBYOC,
        "run",
        "--metrics-port",
        "0",
        "--health-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "no cluster to talk to" in output.decode()
    assert "Traceback" not in output.decode()
