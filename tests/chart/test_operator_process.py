"""The chart's operator container, run for real: the rendered args and env start `lpbyoc run`,
and its liveness/readiness probe path and metrics port answer where the chart points them.

Only the API server is a double (kmock, via tests.support.kube): the rendered args gain
`--server <kmock> --api-double`, as a pod gets its API server from its service account.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.chart.rendering import container, merge, one, render_objects
from tests.chart.test_render import BASE
from tests.support.kube import Cluster, cluster  # noqa: F401  (fixture)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(
    importlib.util.find_spec("lpbyoc.commands.run") is None,
    reason="lpbyoc.commands.run is not in the tree yet: nothing to start",
)
async def test_rendered_container_starts_and_answers_its_probes(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    health, metrics = free_port(), free_port()
    values = merge(
        BASE,
        {
            "health": {"port": health},
            "metrics": {"port": metrics},
            "watch": {"namespaces": [cluster.namespace]},
        },
    )
    deployment = one(render_objects(values), "Deployment", "operator")
    ctr = container(deployment, "operator")
    env = {**os.environ, **{e["name"]: e["value"] for e in ctr["env"]}, "HOME": str(tmp_path)}
    lpbyoc = str(Path(sys.executable).with_name("lpbyoc"))
    proc = await asyncio.create_subprocess_exec(
        lpbyoc,
        "run",
        *ctr["args"],
        "--server",
        cluster.url,
        "--api-double",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    probe = ctr["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                assert proc.returncode is None, (
                    (await proc.stdout.read()).decode()[-2000:] if proc.stdout else ""
                )
                try:
                    live = await client.get(f"http://127.0.0.1:{ports[probe['port']]}{probe['path']}")
                    if live.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, (
                    "the operator never answered its liveness probe"
                )
                await asyncio.sleep(0.3)
            ready = ctr["readinessProbe"]["httpGet"]
            assert (
                await client.get(f"http://127.0.0.1:{ports[ready['port']]}{ready['path']}")
            ).status_code == 200
            scraped = await client.get(f"http://127.0.0.1:{ports['metrics']}/metrics")
            assert scraped.status_code == 200 and "# TYPE" in scraped.text
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
